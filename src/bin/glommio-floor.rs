//! The floor of the benchmark: a glommio server that answers every request with one
//! canned `200 ok` response, no parsing at all (a request is counted by its blank line;
//! a POST's body is read and ignored), on one executor per CPU given. It shows how
//! close a real server gets to what the runtime and the kernel allow.
//!
//! `glommio-floor --listen 127.0.0.1:8082 --cpus 0`

use std::rc::Rc;

use clap::Parser;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::{LocalExecutorBuilder, Placement};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8082")]
    listen: std::net::SocketAddr,
    #[arg(long, value_delimiter = ',', default_value = "0")]
    cpus: Vec<usize>,
}

fn main() {
    let args = Args::parse();
    let handles: Vec<_> = args
        .cpus
        .iter()
        .map(|&cpu| {
            let addr = args.listen;
            LocalExecutorBuilder::new(Placement::Fixed(cpu))
                .io_memory(1 << 20)
                .spawn(move || async move {
                    let listener = Rc::new(glommio::net::TcpListener::bind(addr).expect("bind"));
                    eprintln!("listening on {}", listener.local_addr().expect("address"));
                    loop {
                        let Ok(mut stream) = listener.accept().await else {
                            continue;
                        };
                        glommio::spawn_local(async move {
                            let _ = stream.set_nodelay(true);
                            let mut buf = vec![0u8; 16 << 10];
                            let mut out = Vec::with_capacity(16 << 10);
                            while let Ok(n) = stream.read(&mut buf).await {
                                if n == 0 {
                                    break;
                                }
                                // One response per request in the read (counted by its
                                // blank line), so pipelined clients are answered too.
                                let requests = buf[..n]
                                    .windows(4)
                                    .filter(|w| w == b"\r\n\r\n")
                                    .count()
                                    .max(1);
                                out.clear();
                                for _ in 0..requests {
                                    out.extend_from_slice(RESPONSE);
                                }
                                if stream.write_all(&out).await.is_err() {
                                    break;
                                }
                            }
                        })
                        .detach();
                    }
                })
                .expect("executor")
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
}
