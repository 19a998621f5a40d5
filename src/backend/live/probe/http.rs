//! A minimal HTTP/1.1 client: one GET with `Connection: close`, the answer framed by
//! Content-Length, chunked transfer encoding, or the end of the connection.

use super::{read_reply, Sock};
use crate::ops::probe::{Failure, HttpGet, HttpResponse};
use std::time::Instant;

/// The request: GET PATH, Host (unless the caller gives one), the caller's headers.
pub fn request(get: &HttpGet) -> Vec<u8> {
    let has = |name: &str| get.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut text = format!("GET {} HTTP/1.1\r\n", get.url.path);
    if !has("host") {
        text.push_str(&format!("Host: {}\r\n", get.url.host));
    }
    if !has("user-agent") {
        text.push_str("User-Agent: nsscript\r\n");
    }
    for (k, v) in &get.headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("Connection: close\r\n\r\n");
    text.into_bytes()
}

/// Where the head ends (past its blank line).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A chunked body decoded, if it is complete.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if body.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    Done(HttpResponse),
    Bad(String),
}

/// The response in `buf` (`closed`: the server has closed the connection, so a body
/// without a length ends here).
pub fn parse(buf: &[u8], closed: bool) -> Parsed {
    let Some(end) = head_end(buf) else {
        if closed {
            return Parsed::Bad(format!("the server closed the connection after {} bytes, before a whole HTTP head", buf.len()));
        }
        return Parsed::Incomplete;
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let mut words = status_line.splitn(3, ' ');
    let (version, code) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let Some(status) = code.parse::<u16>().ok().filter(|_| version.starts_with("HTTP/")) else {
        return Parsed::Bad(format!("the answer is not HTTP: {:?}", status_line.chars().take(80).collect::<String>()));
    };
    let reason = words.next().unwrap_or("").trim().to_string();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let rest = &buf[end..];
    // An interim answer (100 Continue) is followed by the real one.
    if (100..200).contains(&status) {
        return parse(rest, closed);
    }
    let body = if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        match dechunk(rest) {
            Some(b) => b,
            None if closed => return Parsed::Bad("the server closed the connection in the middle of a chunked body".into()),
            None => return Parsed::Incomplete,
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if rest.len() < len {
            if closed {
                return Parsed::Bad(format!("the body ended after {} of its {len} bytes", rest.len()));
            }
            return Parsed::Incomplete;
        }
        rest[..len].to_vec()
    } else if status == 204 || status == 304 {
        Vec::new()
    } else if closed {
        rest.to_vec()
    } else {
        return Parsed::Incomplete;
    };
    Parsed::Done(HttpResponse { status, reason, headers, body })
}

/// Send the GET on a connected socket and read the answer.
pub fn get(sock: &Sock, get: &HttpGet, deadline: Instant) -> Result<HttpResponse, Failure> {
    sock.send_all(&request(get), deadline)?;
    let (reply, ended) = read_reply(sock, deadline, |r| !matches!(parse(r, false), Parsed::Incomplete));
    let closed = matches!(ended, Some(Failure::Closed));
    match parse(&reply, closed) {
        Parsed::Done(r) => Ok(r),
        Parsed::Bad(why) => Err(Failure::Protocol(why)),
        Parsed::Incomplete => Err(match ended {
            Some(Failure::Timeout) if !reply.is_empty() => {
                Failure::Protocol(format!("the answer was still incomplete at the deadline ({} bytes)", reply.len()))
            }
            Some(f) => f,
            None => Failure::Timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::probe::Url;
    use crate::ops::NsRef;

    fn done(buf: &[u8], closed: bool) -> HttpResponse {
        match parse(buf, closed) {
            Parsed::Done(r) => r,
            Parsed::Incomplete => panic!("incomplete"),
            Parsed::Bad(why) => panic!("bad: {why}"),
        }
    }

    #[test]
    fn the_request_is_a_get_that_closes() {
        let get = HttpGet {
            ns: NsRef::Host,
            url: Url::parse("http://10.0.0.1:8080/x?y").unwrap(),
            headers: vec![("Accept".into(), "text/plain".into())],
            timeout_ms: 1,
        };
        assert_eq!(
            String::from_utf8(request(&get)).unwrap(),
            "GET /x?y HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nUser-Agent: nsscript\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn answers_are_framed_by_length_chunks_or_the_close() {
        let r = done(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false);
        assert_eq!((r.status, r.reason.as_str(), r.body.as_slice()), (200, "OK", &b"hello"[..]));
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false), Parsed::Incomplete));
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", true), Parsed::Bad(_)));
        let r = done(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n", false);
        assert_eq!(r.body, b"hello world");
        // busybox httpd: HTTP/1.0, no length, the body ends with the connection.
        assert!(matches!(parse(b"HTTP/1.0 404 Not Found\r\n\r\n<html>", false), Parsed::Incomplete));
        let r = done(b"HTTP/1.0 404 Not Found\r\n\r\n<html>", true);
        assert_eq!((r.status, r.body.as_slice()), (404, &b"<html>"[..]));
        let r = done(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", false);
        assert_eq!(r.status, 204);
        assert!(matches!(parse(b"SSH-2.0-OpenSSH\r\n\r\n", true), Parsed::Bad(_)));
    }
}
