//! Out of file descriptors, every accept fails at once: the server loop must back off, not
//! spin. Alone in its own test binary, because it lowers the process's file limit.

use std::time::Duration;
use steward_net::{json_reply, serve, ServerOptions};
use tokio::net::TcpListener;

/// CPU time this process has used (user + system), read through `stat` (opened before
/// the descriptors run out).
fn cpu_time(stat: &std::fs::File) -> Duration {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 4096];
    let n = stat.read_at(&mut buf, 0).unwrap();
    let stat = String::from_utf8_lossy(&buf[..n]).into_owned();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_back_off_instead_of_spinning() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serve(
        listener,
        ServerOptions::default(),
        rx,
        |_req| async { json_reply(hyper::StatusCode::OK, &serde_json::json!({})) },
    ));
    let stat = std::fs::File::open("/proc/self/stat").unwrap();
    // Use up the descriptors: lower the limit to what is open now plus a few, then fill
    // those with connections until accept has none left.
    let open_now = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointers to a local.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = open_now + 8;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    let mut clients = Vec::new();
    for _ in 0..64 {
        match std::net::TcpStream::connect(addr) {
            Ok(c) => clients.push(c),
            Err(_) => break,
        }
    }
    // Connections wait in the backlog; every accept now fails with EMFILE.
    let before = cpu_time(&stat);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_time(&stat) - before;
    assert!(
        used < Duration::from_millis(600),
        "the accept loop used {used:?} of CPU in 2 s: it spins"
    );
    drop(clients);
}
