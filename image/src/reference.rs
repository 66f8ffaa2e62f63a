//! Image references as kubelet sends them, normalized the way containerd
//! and Docker do: `busybox` is `docker.io/library/busybox:latest`; a
//! reference with both a tag and a digest is resolved by the digest and
//! the tag is dropped.

use std::fmt;

use oci_client::Reference;

use crate::digest::Digest;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct RefError {
    pub reference: String,
    pub reason: String,
}

/// A normalized reference: a name and exactly one of tag or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host, e.g. `docker.io` or `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, RefError> {
        let err = |reason: String| RefError {
            reference: s.to_owned(),
            reason,
        };
        if s.trim() != s || s.is_empty() {
            return Err(err("empty or surrounded by whitespace".into()));
        }
        let r: Reference = s.parse().map_err(|e| err(format!("{e}")))?;
        let digest = match r.digest() {
            Some(d) => Some(
                d.parse::<Digest>()
                    .map_err(|_| err(format!("digest {d:?} is not sha256")))?,
            ),
            None => None,
        };
        Ok(ImageRef {
            registry: r.registry().to_owned(),
            repository: r.repository().to_owned(),
            tag: if digest.is_some() {
                None
            } else {
                r.tag().map(str::to_owned)
            },
            digest,
        })
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// This name pinned to `digest` (a repo digest).
    pub fn with_digest(&self, digest: Digest) -> ImageRef {
        ImageRef {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// For oci-client, optionally fetched through `mirror` (a host).
    pub fn to_oci(&self, mirror: Option<&str>) -> Reference {
        let registry = mirror.unwrap_or(&self.registry).to_owned();
        let mut r = match (&self.digest, &self.tag) {
            (Some(d), _) => {
                Reference::with_digest(registry, self.repository.clone(), d.to_string())
            }
            (None, Some(t)) => Reference::with_tag(registry, self.repository.clone(), t.clone()),
            (None, None) => Reference::with_tag(registry, self.repository.clone(), "latest".into()),
        };
        if mirror.is_some() {
            // Keep the repository path; the mirror is asked for it with
            // `?ns=<upstream>` like containerd does.
            let mut upstream = self.to_oci(None);
            upstream.set_mirror_registry(mirror.unwrap_or_default().to_owned());
            r = upstream;
        }
        r
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.digest, &self.tag) {
            (Some(d), _) => write!(f, "{}@{d}", self.name()),
            (None, Some(t)) => write!(f, "{}:{t}", self.name()),
            (None, None) => write!(f, "{}:latest", self.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalizes_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            (
                "docker.io/library/busybox:1.36",
                "docker.io/library/busybox:1.36",
            ),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("myorg/app:v1", "docker.io/myorg/app:v1"),
            ("127.0.0.1:5000/ns/name:tag", "127.0.0.1:5000/ns/name:tag"),
            ("localhost/app", "localhost/app:latest"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
        ];
        for (input, want) in cases {
            assert_eq!(ImageRef::parse(input).unwrap().to_string(), want, "{input}");
        }
    }

    #[test]
    fn digest_wins_over_tag() {
        let r = ImageRef::parse(&format!("busybox:1.36@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/b@{D}")).unwrap();
        assert_eq!(r.digest.unwrap().to_string(), D);
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            " busybox",
            "Busybox",
            "busybox:",
            "a@sha256:12",
            "a@md5:00",
            "a//b",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mirror_keeps_the_repository() {
        let r = ImageRef::parse("busybox:1").unwrap();
        let o = r.to_oci(Some("127.0.0.1:5000"));
        assert_eq!(o.resolve_registry(), "127.0.0.1:5000");
        assert_eq!(o.repository(), "library/busybox");
        assert_eq!(o.tag(), Some("1"));
    }
}
