//! One integration-test binary: each module drives the real `nsscript` binary in an
//! isolated namespace (see `support`).

mod support;

mod bridges;
mod core;
mod firewall;
mod gallery;
mod htb;
mod interactive;
mod linkkinds;
mod overlay;
mod packets;
mod plan;
mod probes;
mod reliability;
mod router;
mod routing;
mod scale;
mod services;
mod trust;
mod ui;
