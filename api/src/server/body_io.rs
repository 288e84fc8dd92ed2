//! Bridges between hyper's async bodies and the image store's blocking
//! `Read`/`Write` APIs, which run on blocking threads: a request body read
//! as a `Read` (for load), and a `Write` that feeds a streamed response (for
//! save). Both are bounded, so a slow client slows the store down instead of
//! filling memory, and a client that goes away ends the operation.

use std::io::{self, Read, Write};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::mpsc;

/// Chunks of request body in flight between the network and the reader.
const READ_DEPTH: usize = 8;
/// Bytes a writer gathers before it hands a chunk to the connection.
const WRITE_CHUNK: usize = 64 << 10;

/// The request body as a blocking reader. Spawns the task that pulls it from
/// the connection; use the reader on a blocking thread only.
pub fn body_reader(body: Incoming) -> BodyReader {
    let (tx, rx) = mpsc::channel(READ_DEPTH);
    tokio::spawn(pump(body, tx));
    channel_reader(rx)
}

/// A blocking reader over chunks another task sends (an error ends it).
pub fn channel_reader(rx: mpsc::Receiver<io::Result<Bytes>>) -> BodyReader {
    BodyReader {
        rx,
        current: Bytes::new(),
    }
}

async fn pump(mut body: Incoming, tx: mpsc::Sender<io::Result<Bytes>>) {
    loop {
        let chunk = match body.frame().await {
            None => return,
            Some(Err(err)) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("reading the request body: {err}"),
            )),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => Ok(data),
                Err(_trailers) => continue,
            },
        };
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            return;
        }
    }
}

pub struct BodyReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(chunk) => self.current = chunk?,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// A blocking writer into a streamed response. Writes fail with
/// `BrokenPipe` once the client has gone. Call `flush` at the end: the
/// last chunk is only sent then.
pub struct StreamWriter {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
}

impl StreamWriter {
    pub fn new(tx: mpsc::Sender<Bytes>) -> StreamWriter {
        StreamWriter {
            tx,
            buf: BytesMut::with_capacity(WRITE_CHUNK),
        }
    }

    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for StreamWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_CHUNK {
            self.send_buffered()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffered()
    }
}
