//! A real process that answers every HTTP request with `500` and a JSON body: the
//! failing canary origin of the breaker tests (and of `scripts/drill`). It reads each
//! request's head, answers, and closes the connection.
//!
//! Usage: `failing-origin <port>` (prints `failing-origin: http://127.0.0.1:<port>`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

const BODY: &str = r#"{"error":"internal","detail":"failing-origin answers 500 to everything"}"#;

fn answer(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    // The head only (bounded): the answer does not depend on the request.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(port)) => port,
        _ => {
            eprintln!("usage: failing-origin <port>");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("failing-origin: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("failing-origin: http://127.0.0.1:{port}");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || answer(stream));
    }
}
