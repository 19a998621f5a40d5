//! `nsscript __serve PROTO PORT [--reply TEXT]`: the responder `serve(ns, port, ...)`
//! starts inside a lab's namespace (this binary in a hidden mode, so a lab needs no
//! socat or web server to check against). It runs until `down` stops it.
//!
//! - tcp: each connection gets the reply at once (and what it sends is read and
//!   dropped), or, without a reply, an echo of what it sends;
//! - udp: each datagram gets the reply, or itself back;
//! - http: each request gets `200 OK` with the reply (default: a line naming the
//!   responder) as its body.
//!
//! It listens on every address of the namespace, IPv4 and IPv6.

use crate::ops::probe::ServeProto;
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

/// Both families on one socket where IPv6 is there ([::] accepts IPv4 too), else IPv4.
fn addresses(port: u16) -> [SocketAddr; 2] {
    [SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port), SocketAddr::new([0, 0, 0, 0].into(), port)]
}

fn tcp_connection(mut conn: TcpStream, reply: Option<&str>) {
    let mut buf = [0u8; 65536];
    if let Some(r) = reply {
        if conn.write_all(r.as_bytes()).is_err() {
            return;
        }
    }
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        if reply.is_none() && conn.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

fn http_connection(mut conn: TcpStream, body: &str) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") && head.len() < 65536 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head_only = head.starts_with(b"HEAD ");
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\nServer: nsscript\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        answer.push_str(body);
    }
    let _ = conn.write_all(answer.as_bytes());
}

fn serve_tcp(proto: ServeProto, port: u16, reply: Option<String>) -> std::io::Result<()> {
    let listener = TcpListener::bind(&addresses(port)[..])?;
    println!("nsscript serve: {} on port {port}", proto.name());
    let body = reply.clone().unwrap_or_else(|| format!("nsscript serve on port {port}\n"));
    for conn in listener.incoming().flatten() {
        let (reply, body) = (reply.clone(), body.clone());
        std::thread::spawn(move || match proto {
            ServeProto::Http => http_connection(conn, &body),
            _ => tcp_connection(conn, reply.as_deref()),
        });
    }
    Ok(())
}

fn serve_udp(port: u16, reply: Option<String>) -> std::io::Result<()> {
    let sock = UdpSocket::bind(&addresses(port)[..])?;
    println!("nsscript serve: udp on port {port}");
    let mut buf = [0u8; 65536];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        let answer = reply.as_ref().map(|r| r.as_bytes()).unwrap_or(&buf[..n]);
        let _ = sock.send_to(answer, from);
    }
}

pub fn run(proto: &str, port: u16, reply: Option<String>) -> ExitCode {
    let proto = match ServeProto::parse(proto) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("nsscript serve: {e}");
            return ExitCode::from(2);
        }
    };
    let out = match proto {
        ServeProto::Udp => serve_udp(port, reply),
        _ => serve_tcp(proto, port, reply),
    };
    match out {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nsscript serve: cannot serve {} on port {port}: {e}", proto.name());
            ExitCode::from(1)
        }
    }
}
