//! CRI ContainerConfig → OCI runtime spec. Being built (containers issue).
