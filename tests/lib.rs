//! One integration-test binary: each module drives the real `nsscript` binary in an
//! isolated namespace (see `support`).

mod support;

mod core;
mod router;
mod overlay;
mod interactive;
mod reliability;
mod scale;
mod gallery;
