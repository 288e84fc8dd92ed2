//! A bare HTTP/1.1 client of the daemon's socket for the timing loops:
//! nothing between the request and the clock but a buffered read.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

use anyhow::{bail, Context};
use hutch_tests::daemon::SOCKET;

/// An HTTP/1.1 connection to the daemon's socket, read line by line.
pub struct Conn {
    writer: UnixStream,
    pub reader: BufReader<UnixStream>,
}

pub struct Head {
    pub status: u16,
    pub length: Option<usize>,
}

impl Conn {
    pub fn open() -> anyhow::Result<Conn> {
        let sock = UnixStream::connect(SOCKET).context("connecting to the daemon")?;
        Ok(Conn {
            writer: sock.try_clone()?,
            reader: BufReader::new(sock),
        })
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: Option<&str>,
    ) -> anyhow::Result<()> {
        let body = body.unwrap_or("");
        let kind = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/json\r\n"
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: api.moby.localhost\r\n{headers}{kind}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.writer.write_all(request.as_bytes())?;
        Ok(())
    }

    pub fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("the daemon closed the connection");
        }
        Ok(line)
    }

    pub fn head(&mut self) -> anyhow::Result<Head> {
        let status_line = self.line()?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("a status line: {status_line:?}"))?;
        let mut length = None;
        loop {
            let line = self.line()?;
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = Some(v.trim().parse::<usize>()?);
            }
        }
        Ok(Head { status, length })
    }

    pub fn body(&mut self, head: &Head) -> anyhow::Result<Vec<u8>> {
        let mut body = vec![0; head.length.unwrap_or(0)];
        self.reader.read_exact(&mut body)?;
        Ok(body)
    }
}
