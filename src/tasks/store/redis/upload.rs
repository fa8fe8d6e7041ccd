//! Submits' own Redis connections, with the command framed here so that an upload's image bytes
//! go from the request's `Bytes` straight to the socket.
//!
//! Through redis-rs each image was copied three times before the kernel saw it (into the
//! command, into the packed pipeline, into the connection's write buffer), and the buffers grew
//! by doubling on the way: for a 350 KB `kyc_passport` that was most of the 0.5 ms a submit
//! spent on Redis (docs/PERFORMANCE.md). Here the small parts of the `MULTI … EXEC` are written
//! into one buffer and the images are spliced in as their own `IoSlice`s of one vectored write.
//!
//! Only what a submit needs is spoken: RESP2 requests, the five replies of one transaction,
//! `AUTH` and `SELECT` from the store URL. Every step is bounded: connecting by the store's
//! connect timeout, the whole exchange by its response timeout, and a reply by
//! [`MAX_REPLY_BYTES`]. A connection that failed in any way is dropped, never reused: its
//! stream may be mid-command.

use std::io::IoSlice;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::super::StoreError;

/// Largest reply accepted for one exchange (a submit's replies are a few hundred bytes).
pub(super) const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Deepest array nesting accepted in a reply (`EXEC` → script reply → strings is 2).
const MAX_DEPTH: usize = 4;

/// A byte stream to Redis: TCP or a Unix socket.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {
    /// Whether the connection is unusable after sitting idle: Redis closed it (a restart, its
    /// `timeout` setting) or sent something nobody asked for. Never waits.
    fn stale(&self) -> bool;
}

/// `try_read` answers from the readiness the runtime has seen: `WouldBlock` for a quiet open
/// socket, `Ok(0)` once the peer's close arrived.
macro_rules! stale_by_try_read {
    ($t:ty) => {
        impl Io for $t {
            fn stale(&self) -> bool {
                let mut byte = [0u8; 1];
                !matches!(self.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    };
}
stale_by_try_read!(tokio::net::TcpStream);
#[cfg(unix)]
stale_by_try_read!(tokio::net::UnixStream);

/// One command transaction being framed: the small parts in `text`, and the images to splice
/// in at byte offsets of it (they are never copied).
#[derive(Default)]
pub(super) struct Frame<'a> {
    text: Vec<u8>,
    cuts: Vec<(usize, &'a [u8])>,
    commands: usize,
}

impl<'a> Frame<'a> {
    /// Starts a command of `args` arguments (its name included).
    pub(super) fn command(&mut self, args: usize) -> &mut Self {
        self.commands += 1;
        self.text.push(b'*');
        self.number(args);
        self
    }

    /// A small argument, copied into the frame.
    pub(super) fn arg(&mut self, arg: impl AsRef<[u8]>) -> &mut Self {
        let arg = arg.as_ref();
        self.bulk_header(arg.len());
        self.text.extend_from_slice(arg);
        self.text.extend_from_slice(b"\r\n");
        self
    }

    /// A large argument, written from where it is.
    pub(super) fn image(&mut self, bytes: &'a [u8]) -> &mut Self {
        self.bulk_header(bytes.len());
        self.cuts.push((self.text.len(), bytes));
        self.text.extend_from_slice(b"\r\n");
        self
    }

    /// Commands framed so far (each gets one reply).
    pub(super) fn commands(&self) -> usize {
        self.commands
    }

    fn bulk_header(&mut self, len: usize) {
        self.text.push(b'$');
        self.number(len);
    }

    fn number(&mut self, n: usize) {
        self.text.extend_from_slice(n.to_string().as_bytes());
        self.text.extend_from_slice(b"\r\n");
    }

    /// The frame as it goes on the wire: text and images interleaved.
    fn slices(&self) -> Vec<IoSlice<'_>> {
        let mut out = Vec::with_capacity(self.cuts.len() * 2 + 1);
        let mut at = 0;
        for &(cut, image) in &self.cuts {
            out.push(IoSlice::new(&self.text[at..cut]));
            out.push(IoSlice::new(image));
            at = cut;
        }
        out.push(IoSlice::new(&self.text[at..]));
        out.retain(|s| !s.is_empty());
        out
    }

    #[cfg(test)]
    fn to_vec(&self) -> Vec<u8> {
        self.slices().iter().flat_map(|s| s.iter().copied()).collect()
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// Parses one reply at the start of `buf`: `Ok(None)` while it is incomplete, else the reply and
/// the bytes it took. Anything that is not RESP2 is `Corrupt`.
pub(super) fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, StoreError> {
    parse_at(buf, 0)
}

fn parse_at(buf: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("Redis reply to a submit: {why}"));
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
    let (Some(&kind), line) = (buf.first(), &buf[1.min(end)..end]) else { return Ok(None) };
    let text = std::str::from_utf8(line).map_err(|_| corrupt("not text"))?;
    let after = end + 2;
    let length = || text.parse::<i64>().map_err(|_| corrupt("bad length"));
    Ok(match kind {
        b'+' => Some((Reply::Status(text.to_string()), after)),
        b'-' => Some((Reply::Error(text.to_string()), after)),
        b':' => Some((Reply::Int(length()?), after)),
        b'$' => match length()? {
            -1 => Some((Reply::Bulk(None), after)),
            n if n < 0 || n as usize > MAX_REPLY_BYTES => return Err(corrupt("bulk length out of bounds")),
            n => {
                let n = n as usize;
                if buf.len() < after + n + 2 {
                    return Ok(None);
                }
                if &buf[after + n..after + n + 2] != b"\r\n" {
                    return Err(corrupt("bulk string not terminated"));
                }
                Some((Reply::Bulk(Some(buf[after..after + n].to_vec())), after + n + 2))
            }
        },
        b'*' => match length()? {
            -1 => Some((Reply::Array(None), after)),
            n if n < 0 || n as usize > MAX_REPLY_BYTES / 4 => return Err(corrupt("array length out of bounds")),
            _ if depth >= MAX_DEPTH => return Err(corrupt("nested too deep")),
            n => {
                let mut items = Vec::with_capacity(n as usize);
                let mut at = after;
                for _ in 0..n {
                    match parse_at(&buf[at..], depth + 1)? {
                        Some((item, used)) => {
                            items.push(item);
                            at += used;
                        }
                        None => return Ok(None),
                    }
                }
                Some((Reply::Array(Some(items)), at))
            }
        },
        _ => return Err(corrupt("unknown reply type")),
    })
}

/// One connection of the pool.
struct Conn {
    io: Box<dyn Io>,
    /// Received bytes not yet parsed.
    pending: Vec<u8>,
}

impl Conn {
    async fn open(info: &ConnectionInfo) -> Result<Self, StoreError> {
        let io: Box<dyn Io> = match &info.addr {
            ConnectionAddr::Tcp(host, port) => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await.map_err(unavailable)?;
                stream.set_nodelay(true).map_err(unavailable)?;
                Box::new(stream)
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await.map_err(unavailable)?),
            other => return Err(StoreError::Unavailable(format!("unsupported Redis address for uploads: {other}"))),
        };
        let mut conn = Self { io, pending: Vec::new() };
        let mut hello = Frame::default();
        if let Some(password) = &info.redis.password {
            match &info.redis.username {
                Some(user) => hello.command(3).arg("AUTH").arg(user).arg(password),
                None => hello.command(2).arg("AUTH").arg(password),
            };
        }
        if info.redis.db != 0 {
            hello.command(2).arg("SELECT").arg(info.redis.db.to_string());
        }
        if hello.commands() > 0 {
            for reply in conn.exchange(&hello).await? {
                if let Reply::Error(e) = reply {
                    return Err(StoreError::Unavailable(format!("Redis refused the upload connection: {e}")));
                }
            }
        }
        Ok(conn)
    }

    /// Writes `frame` and reads one reply per command.
    async fn exchange(&mut self, frame: &Frame<'_>) -> Result<Vec<Reply>, StoreError> {
        let mut slices = frame.slices();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = self.io.write_vectored(rest).await.map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::Unavailable("Redis closed the upload connection".into()));
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        let mut replies = Vec::with_capacity(frame.commands());
        while replies.len() < frame.commands() {
            match parse(&self.pending)? {
                Some((reply, used)) => {
                    self.pending.drain(..used);
                    replies.push(reply);
                }
                None if self.pending.len() >= MAX_REPLY_BYTES => {
                    return Err(StoreError::Corrupt("Redis reply to a submit is too large".into()))
                }
                None => {
                    let mut chunk = [0u8; 4096];
                    let n = self.io.read(&mut chunk).await.map_err(unavailable)?;
                    if n == 0 {
                        return Err(StoreError::Unavailable("Redis closed the upload connection".into()));
                    }
                    self.pending.extend_from_slice(&chunk[..n]);
                }
            }
        }
        Ok(replies)
    }
}

fn unavailable(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Idle upload connections (at most `keep`), opened on demand.
pub(super) struct UploadPool {
    info: ConnectionInfo,
    idle: StdMutex<Vec<Conn>>,
    keep: usize,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl UploadPool {
    pub(super) fn new(info: ConnectionInfo, keep: usize, connect_timeout: Duration, response_timeout: Duration) -> Self {
        Self { info, idle: StdMutex::new(Vec::new()), keep, connect_timeout, response_timeout }
    }

    /// Sends `frame` on an idle connection (or a new one) and returns its replies. Connecting
    /// and the exchange are bounded by the store's timeouts; a connection that failed is dropped.
    pub(super) async fn exchange(&self, frame: &Frame<'_>) -> Result<Vec<Reply>, StoreError> {
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            // Connections Redis closed while they sat idle are dropped here, not found dead by
            // a submit that would then fail.
            idle.retain(|conn| !conn.io.stale());
            idle.pop()
        };
        let mut conn = match idle {
            Some(conn) => conn,
            None => tokio::time::timeout(self.connect_timeout, Conn::open(&self.info))
                .await
                .map_err(|_| StoreError::Unavailable("timed out connecting to Redis for an upload".into()))??,
        };
        let replies = match tokio::time::timeout(self.response_timeout, conn.exchange(frame)).await {
            Ok(Ok(replies)) => replies,
            failed => {
                // The idle connections were opened before whatever broke this one (most often a
                // Redis restart): dropped too, so the next submits reconnect instead of each
                // failing on a dead socket in turn.
                self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
                return Err(match failed {
                    Ok(Err(e)) => e,
                    _ => StoreError::Unavailable("timed out waiting for Redis to take an upload".into()),
                });
            }
        };
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.keep && conn.pending.is_empty() {
            idle.push(conn);
        }
        Ok(replies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_splices_images_between_its_small_parts() {
        let image = b"\xff\xd8 jpeg \r\n bytes".to_vec();
        let mut f = Frame::default();
        f.command(1).arg("MULTI");
        f.command(4).arg("HSET").arg("k").arg("f").image(&image);
        f.command(1).arg("EXEC");
        let mut want = b"*1\r\n$5\r\nMULTI\r\n*4\r\n$4\r\nHSET\r\n$1\r\nk\r\n$1\r\nf\r\n$".to_vec();
        want.extend_from_slice(format!("{}\r\n", image.len()).as_bytes());
        want.extend_from_slice(&image);
        want.extend_from_slice(b"\r\n*1\r\n$4\r\nEXEC\r\n");
        assert_eq!(f.to_vec(), want);
        assert_eq!(f.commands(), 3);
        // The image is its own slice, not a copy.
        assert!(f.slices().iter().any(|s| s.as_ptr() == image.as_ptr()));
    }

    #[test]
    fn replies_parse_whole_or_not_at_all() {
        let exec = b"*3\r\n:1\r\n:1\r\n*2\r\n$2\r\nOK\r\n$-1\r\n";
        let want = Reply::Array(Some(vec![
            Reply::Int(1),
            Reply::Int(1),
            Reply::Array(Some(vec![Reply::Bulk(Some(b"OK".to_vec())), Reply::Bulk(None)])),
        ]));
        assert_eq!(parse(exec).unwrap(), Some((want, exec.len())));
        for cut in 0..exec.len() {
            assert_eq!(parse(&exec[..cut]).unwrap(), None, "prefix of {cut} bytes");
        }
        assert_eq!(parse(b"+QUEUED\r\n-NOSCRIPT x\r\n").unwrap(), Some((Reply::Status("QUEUED".into()), 9)));
        assert_eq!(parse(b"-NOSCRIPT No matching script\r\n").unwrap().unwrap().0, Reply::Error("NOSCRIPT No matching script".into()));
    }

    /// A pool for a fake Redis on loopback that answers every connection with `answer` (and
    /// then closes it if `close`), with short timeouts.
    async fn fake_redis(answer: &'static [u8], close: bool) -> UploadPool {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut sink = vec![0u8; 1 << 16];
                    let _ = socket.read(&mut sink).await;
                    let _ = socket.write_all(answer).await;
                    if !close {
                        // Keep reading (the rest of the upload) and never answer more.
                        while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                    }
                });
            }
        });
        let info: ConnectionInfo = format!("redis://127.0.0.1:{port}").parse().unwrap();
        UploadPool::new(info, 2, Duration::from_secs(1), Duration::from_millis(300))
    }

    fn submit_like(image: &[u8]) -> Frame<'_> {
        let mut f = Frame::default();
        f.command(1).arg("MULTI");
        f.command(4).arg("HSET").arg("k").arg("f").image(image);
        f.command(1).arg("EXEC");
        f
    }

    #[tokio::test]
    async fn a_hostile_or_silent_server_fails_the_exchange_in_bounded_time() {
        let image = vec![0xabu8; 300_000];
        for (answer, close, corrupt) in [
            (&b"HTTP/1.1 400 Bad Request\r\n\r\n"[..], false, true),
            (b"+OK\r\n+QUEUED\r\n", true, false),
            (b"+OK\r\n", false, false),
            (b"", false, false),
        ] {
            let pool = fake_redis(answer, close).await;
            let started = std::time::Instant::now();
            let result = pool.exchange(&submit_like(&image)).await;
            assert!(started.elapsed() < Duration::from_secs(2), "{:?}", String::from_utf8_lossy(answer));
            match result {
                Err(StoreError::Corrupt(_)) if corrupt => {}
                Err(StoreError::Unavailable(_)) if !corrupt => {}
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(answer)),
            }
            assert!(pool.idle.lock().unwrap().is_empty(), "a failed connection is not kept");
        }
    }

    /// After a Redis restart (every open connection closed) one submit fails, not one per idle
    /// connection, and the next one reconnects.
    #[tokio::test]
    async fn one_dead_connection_clears_the_idle_ones() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let restarted = Arc::new(AtomicBool::new(false));
        let flag = restarted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let flag = flag.clone();
                // Connections accepted after the "restart" belong to the new server.
                let born_after = flag.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {
                        if flag.load(Ordering::SeqCst) && !born_after {
                            return;
                        }
                        if socket.write_all(b"+PONG\r\n").await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let info: ConnectionInfo = format!("redis://127.0.0.1:{port}").parse().unwrap();
        let pool = UploadPool::new(info, 4, Duration::from_secs(1), Duration::from_secs(1));
        let mut ping = Frame::default();
        ping.command(1).arg("PING");
        let (a, b, c) = tokio::join!(pool.exchange(&ping), pool.exchange(&ping), pool.exchange(&ping));
        for r in [a, b, c] {
            assert_eq!(r.unwrap(), vec![Reply::Status("PONG".into())]);
        }
        assert_eq!(pool.idle.lock().unwrap().len(), 3);
        restarted.store(true, Ordering::SeqCst);
        assert!(matches!(pool.exchange(&ping).await, Err(StoreError::Unavailable(_))));
        assert!(pool.idle.lock().unwrap().is_empty());
        assert_eq!(pool.exchange(&ping).await.unwrap(), vec![Reply::Status("PONG".into())]);
    }

    /// Connections Redis closed while idle (its `timeout`, a restart between submits) are
    /// noticed before use: the next submit opens a new one instead of failing.
    #[tokio::test]
    async fn connections_closed_while_idle_are_not_used() {
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let close_all = Arc::new(tokio::sync::Notify::new());
        let closer = close_all.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let closer = closer.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        tokio::select! {
                            read = socket.read(&mut buf) => match read {
                                Ok(n) if n > 0 => {
                                    if socket.write_all(b"+PONG\r\n").await.is_err() {
                                        return;
                                    }
                                }
                                _ => return,
                            },
                            _ = closer.notified() => return,
                        }
                    }
                });
            }
        });
        let info: ConnectionInfo = format!("redis://127.0.0.1:{port}").parse().unwrap();
        let pool = UploadPool::new(info, 4, Duration::from_secs(1), Duration::from_secs(1));
        let mut ping = Frame::default();
        ping.command(1).arg("PING");
        let (a, b) = tokio::join!(pool.exchange(&ping), pool.exchange(&ping));
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(pool.idle.lock().unwrap().len(), 2);
        close_all.notify_waiters();
        // Until the runtime has seen both closes (a condition, bounded; not a fixed wait).
        tokio::time::timeout(Duration::from_secs(5), async {
            while !pool.idle.lock().unwrap().iter().all(|c| c.io.stale()) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the closes arrive");
        assert_eq!(pool.exchange(&ping).await.unwrap(), vec![Reply::Status("PONG".into())]);
        assert_eq!(pool.idle.lock().unwrap().len(), 1, "the two closed connections were dropped");
    }

    #[test]
    fn garbage_and_oversized_replies_are_corrupt() {
        for bad in [&b"?what\r\n"[..], b"$5\r\nabcdefg\r\n", b"$99999999\r\n", b"*99999999\r\n", b":x\r\n", b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"] {
            assert!(matches!(parse(bad), Err(StoreError::Corrupt(_))), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
