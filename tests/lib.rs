//! One integration-test binary: each module drives the real `nsscript` binary in an
//! isolated namespace (see `support`).

mod support;

mod core;
mod firewall;
mod gallery;
mod interactive;
mod overlay;
mod packets;
mod plan;
mod reliability;
mod router;
mod scale;
mod services;
mod trust;
mod ui;
