//! Unpacker tests, against the real kernel. Most need root (device nodes,
//! chown, `trusted.*` xattrs): they skip with a message when not root, and
//! fail under `CI=true`.

mod hostile;
mod overlay;
mod roundtrip;
mod support;
