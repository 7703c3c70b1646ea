//! Rust std, unmodified: every response is the SocketAddr that
//! `TcpListener::accept` returned, as std formats it.
//! Usage: rust_std HOST PORT (HOST 0.0.0.0: AF_INET; `::`: dual-stack)

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args[2].parse().expect("port");
    let listener = TcpListener::bind((args[1].as_str(), port)).expect("bind");
    loop {
        let (stream, peer) = listener.accept().expect("accept");
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            line.clear();
        }
        let body = format!("{peer}\n");
        let _ = write!(
            &stream,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
}
