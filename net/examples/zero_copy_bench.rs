//! Fetch-path throughput: a cached file sent to a loopback TCP client by copying
//! (`BufferedFile::read_at` + `write_all`, the path without zero copy) and by
//! `zero_copy::splice_to_socket`, one glommio executor, one reader thread that discards.
//!
//! cargo run --release -p spate-net --example zero_copy_bench [-- FILE_MIB [ROUNDS [FILTER]]]
//!
//! FILTER keeps only the runs whose name contains it, e.g. "splice 16".
//!
//! Prints, per method: throughput; CPU time per GiB sent, of the whole process and of the
//! sending side alone (the process minus the reader thread, so it includes io_uring's worker
//! threads); wall time per call.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;
use glommio::io::BufferedFile;
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use spate_net::zero_copy::splice_to_socket;

/// Bytes per read_at / splice call: a typical `max.partition.fetch.bytes` (1 MiB).
const CHUNK: usize = 1 << 20;
/// Bytes per call in the small-fetch runs (a consumer that keeps up gets little per fetch);
/// these runs send a tenth of the file, since per-call cost is what they show.
const SMALL: [usize; 3] = [16 << 10, 64 << 10, 256 << 10];

/// CPU time (user + system) of the process (`libc::RUSAGE_SELF`) or the calling thread
/// (`libc::RUSAGE_THREAD`).
fn cpu_time(who: libc::c_int) -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Accepts one client thread that reads and discards until EOF, returning how many bytes it
/// read and the CPU time it spent.
async fn connect() -> (TcpStream, std::thread::JoinHandle<(u64, Duration)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let cpu = cpu_time(libc::RUSAGE_THREAD);
        loop {
            match socket.read(&mut buf).unwrap() {
                0 => return (total, cpu_time(libc::RUSAGE_THREAD) - cpu),
                n => total += n as u64,
            }
        }
    });
    (listener.accept().await.unwrap(), reader)
}

async fn copy(file: &BufferedFile, stream: &mut TcpStream, len: usize, chunk: usize) {
    let mut pos = 0;
    while pos < len {
        let n = chunk.min(len - pos);
        let buf = file.read_at(pos as u64, n).await.unwrap();
        stream.write_all(&buf).await.unwrap();
        pos += buf.len();
    }
}

async fn splice(file: &BufferedFile, stream: &TcpStream, len: usize, chunk: usize) {
    let mut pos = 0;
    while pos < len {
        let n = chunk.min(len - pos);
        splice_to_socket(stream.as_raw_fd(), file.as_raw_fd(), pos as u64, n)
            .await
            .unwrap();
        pos += n;
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let file_mib: usize = args.next().map_or(1024, |a| a.parse().expect("FILE_MIB"));
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("ROUNDS"));
    let filter = args.next().unwrap_or_default();
    let len = file_mib << 20;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("segment.log");
    {
        let mut f = std::fs::File::create(&path).unwrap();
        let block: Vec<u8> = (0..CHUNK).map(|i| i as u8).collect();
        for _ in 0..file_mib {
            f.write_all(&block).unwrap();
        }
        // Read it back once so every method starts from a warm page cache.
        let mut f = std::fs::File::open(&path).unwrap();
        let mut sink = vec![0u8; CHUNK];
        while f.read(&mut sink).unwrap() > 0 {}
    }

    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 << 10)
        .make()
        .unwrap()
        .run(async move {
            let file = BufferedFile::open(&path).await.unwrap();
            for round in 0..rounds {
                let mut runs = vec![(true, len), (false, CHUNK), (true, CHUNK)];
                for small in SMALL {
                    runs.extend([(false, small), (true, small)]);
                }
                for (zero_copy, chunk) in runs {
                    let method = format!(
                        "{} {} KiB calls",
                        if zero_copy { "splice" } else { "copy" },
                        chunk >> 10
                    );
                    if !method.contains(&filter) {
                        continue;
                    }
                    let len = if SMALL.contains(&chunk) { len / 10 } else { len };
                    let (mut stream, reader) = connect().await;
                    let (cpu, start) = (cpu_time(libc::RUSAGE_SELF), Instant::now());
                    if zero_copy {
                        splice(&file, &stream, len, chunk).await;
                    } else {
                        copy(&file, &mut stream, len, chunk).await;
                    }
                    stream.shutdown(std::net::Shutdown::Write).await.unwrap();
                    let (got, reader_cpu) = reader.join().unwrap();
                    let (wall, cpu) = (start.elapsed(), cpu_time(libc::RUSAGE_SELF) - cpu);
                    assert_eq!(got, len as u64);
                    let gib = len as f64 / (1u64 << 30) as f64;
                    let calls = len.div_ceil(chunk) as f64;
                    println!(
                        "round {round} {method:>22}: {:5.2} GiB/s, CPU-s/GiB {:4.2} all, {:4.2} sender; {:7.1} us/call",
                        gib / wall.as_secs_f64(),
                        cpu.as_secs_f64() / gib,
                        cpu.saturating_sub(reader_cpu).as_secs_f64() / gib,
                        wall.as_secs_f64() * 1e6 / calls,
                    );
                }
            }
            file.close().await.unwrap();
        });
}
