//! `xtask bench-load`: `local-stack load` against a stack of its own.
//!
//! Order of things, and what holds whatever happens:
//!
//! 1. `cargo build -p local-stack`, so neither the stack nor load compiles
//!    while the other waits;
//! 2. two free loopback ports, one for the stack, one for its local AWS
//!    endpoint (so a running `make local` on 3000/5000 is left alone);
//! 3. `.local/stack.json` and `.local/functions.env`, which `up` writes,
//!    copied aside ([`Saved`]); they are put back (or removed, if there were
//!    none) when this ends, however it ends;
//! 4. `local-stack up --no-worker` with its output in
//!    `.local/bench-load-stack.log`, stopped when this ends ([`Stack`]);
//! 5. at most [`READY_WITHIN`] for it to answer HTTP; if it exits first,
//!    the log's last [`LOG_TAIL`] lines are shown;
//! 6. `local-stack load --url http://127.0.0.1:<port> <args>`; its exit
//!    code is this command's.
//!
//! Ctrl-C (SIGINT), SIGTERM and SIGHUP are held while the children run:
//! the stack and load are stopped and the files put back before it exits
//! with 128 + the signal.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use crate::{cargo, exit_code, Error};

/// What `local-stack up` writes in `.local/`, and a running `make local` needs kept.
pub const STATE_FILES: [&str; 2] = ["stack.json", "functions.env"];
/// How long the stack may take to answer.
pub const READY_WITHIN: Duration = Duration::from_secs(120);
/// Lines of the stack's log shown when it exits early.
pub const LOG_TAIL: usize = 20;
/// How long a stopped child may take to exit before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Python with moto, for the stack's local AWS endpoint
    /// [default: .venv/bin/python in the workspace]
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Passed to `local-stack load` as they are: --count 10000,
    /// --repeat-percent 30, --concurrency 32, --max-seconds 900,
    /// --timeout-seconds 30, --max-attempts 8 (the defaults).
    #[arg(
        value_name = "LOAD_ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub load_args: Vec<String>,
}

pub fn run(root: &Path, args: Args) -> Result<u8, Error> {
    let python = args.python.unwrap_or_else(|| root.join(".venv/bin/python"));
    let built = cargo(root)
        .args(["build", "--quiet", "--locked", "-p", "local-stack"])
        .status()?;
    if !built.success() {
        return Ok(exit_code(built));
    }
    let (port, aws_port) = free_ports()?;
    let local = root.join(".local");
    std::fs::create_dir_all(&local)?;
    let log_path = local.join("bench-load-stack.log");
    signals::hold();

    // Dropped in reverse order: the stack is stopped, then the files put back.
    let saved = Saved::take(&local, &STATE_FILES, &std::env::temp_dir())?;
    let log = File::create(&log_path)?;
    let mut stack = Stack(
        local_stack(root, "up")
            .args(["--port", &port.to_string()])
            .args(["--aws-port", &aws_port.to_string()])
            .arg("--python")
            .arg(&python)
            .arg("--no-worker")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting local-stack up: {e}"))?,
    );
    println!(
        "bench-load: local stack on http://127.0.0.1:{port}, its AWS endpoint on port {aws_port}, log in {}",
        log_path.strip_prefix(root).unwrap_or(&log_path).display()
    );

    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Some(signal) = signals::received() {
            return Ok(interrupted(signal));
        }
        if stack.0.try_wait()?.is_some() {
            eprintln!("bench-load: the local stack exited:");
            eprintln!("{}", tail(&std::fs::read(&log_path)?, LOG_TAIL));
            return Ok(1);
        }
        if answers_http(port) {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "bench-load: the local stack did not answer within {} s",
                READY_WITHIN.as_secs()
            );
            return Ok(1);
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    let mut load = local_stack(root, "load")
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(&args.load_args)
        .spawn()
        .map_err(|e| format!("starting local-stack load: {e}"))?;
    let status = loop {
        if let Some(status) = load.try_wait()? {
            break status;
        }
        if let Some(signal) = signals::received() {
            stop(&mut load, STOP_WITHIN);
            return Ok(interrupted(signal));
        }
        std::thread::sleep(POLL);
    };
    drop(stack);
    drop(saved);
    Ok(exit_code(status))
}

fn interrupted(signal: i32) -> u8 {
    eprintln!("bench-load: interrupted; stopping the local stack");
    u8::try_from(128 + signal).unwrap_or(1)
}

/// Two distinct free ports on loopback, as the system hands them out (both
/// held until both are known, so they differ).
pub fn free_ports() -> std::io::Result<(u16, u16)> {
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// Whether something on `port` answers `GET /` with an HTTP status line
/// within 5 s.
pub fn answers_http(port: u16) -> bool {
    let limit = Duration::from_secs(5);
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, limit) else {
        return false;
    };
    let mut start = [0u8; 4];
    stream.set_read_timeout(Some(limit)).is_ok()
        && stream.set_write_timeout(Some(limit)).is_ok()
        && stream.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok()
        && stream.read_exact(&mut start).is_ok()
        && &start == b"HTTP"
}

/// The last `n` lines of `log`.
pub fn tail(log: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(log);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sends SIGTERM, waits up to `within`, then kills.
fn stop(child: &mut Child, within: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: signals our own child, which has not been reaped (try_wait
        // saw it running), so the pid is still its.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return;
        }
        std::thread::sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The running stack (`cargo run` execs local-stack, so this is its
/// process), stopped when dropped. Its local AWS endpoint reads a pipe
/// from it and stops when it does.
struct Stack(Child);

impl Drop for Stack {
    fn drop(&mut self) {
        stop(&mut self.0, STOP_WITHIN);
    }
}

/// Files of a directory copied aside (contents, permissions and
/// modification time, as `cp -p`), put back when dropped: each saved one
/// copied back, each that did not exist removed.
pub struct Saved {
    dir: PathBuf,
    aside: PathBuf,
    names: Vec<String>,
}

impl Saved {
    /// Copies those of `names` that exist in `dir` to a new directory
    /// under `temp`.
    pub fn take(dir: &Path, names: &[&str], temp: &Path) -> std::io::Result<Self> {
        let aside = new_private_dir(temp, "xtask-bench-load")?;
        let saved = Self {
            dir: dir.to_owned(),
            aside,
            names: names.iter().map(|n| n.to_string()).collect(),
        };
        for name in &saved.names {
            let path = dir.join(name);
            if path.exists() {
                copy_preserving(&path, &saved.aside.join(name))?;
            }
        }
        Ok(saved)
    }

    fn restore(&self) -> std::io::Result<()> {
        for name in &self.names {
            let (kept, path) = (self.aside.join(name), self.dir.join(name));
            if kept.exists() {
                copy_preserving(&kept, &path)?;
            } else if let Err(error) = std::fs::remove_file(&path) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    return Err(error);
                }
            }
        }
        match std::fs::remove_dir_all(&self.aside) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        if let Err(error) = self.restore() {
            eprintln!(
                "bench-load: putting back {} from {} failed: {error}",
                self.names.join(", "),
                self.aside.display()
            );
        }
    }
}

/// A new directory only this user can read, under `parent`.
fn new_private_dir(parent: &Path, prefix: &str) -> std::io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut last = None;
    for attempt in 0..100u32 {
        let path = parent.join(format!(
            "{prefix}-{}-{nanos:x}-{attempt}",
            std::process::id()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free name")))
}

/// `cp -p`: contents, permissions and modification time.
fn copy_preserving(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to)?;
    let modified = std::fs::metadata(from)?.modified()?;
    File::options().write(true).open(to)?.set_modified(modified)
}

/// Termination signals held while the children run, so the stack is
/// stopped and the files put back before this exits.
mod signals {
    use super::*;

    static RECEIVED: AtomicI32 = AtomicI32::new(0);

    extern "C" fn note(signal: libc::c_int) {
        RECEIVED.store(signal, Ordering::SeqCst);
    }

    /// From now on SIGINT, SIGTERM and SIGHUP are noted, not fatal. A
    /// handler (not SIG_IGN) is reset to the default in the children at
    /// exec, so Ctrl-C still reaches and stops them.
    pub fn hold() {
        let handler = note as extern "C" fn(libc::c_int) as libc::sighandler_t;
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: the handler only stores to an atomic, which is
            // async-signal-safe.
            unsafe {
                libc::signal(signal, handler);
            }
        }
    }

    /// The last signal noted, if any.
    pub fn received() -> Option<i32> {
        match RECEIVED.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }
}

/// `local-stack <subcommand>`, built and run by cargo from the workspace.
fn local_stack(root: &Path, subcommand: &str) -> Command {
    let mut command = cargo(root);
    command.args([
        "run",
        "--quiet",
        "--locked",
        "-p",
        "local-stack",
        "--",
        subcommand,
    ]);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Args {
        crate::tests::parse_args::<Args>("bench-load", line).unwrap()
    }

    #[test]
    fn load_flags_after_the_python_are_passed_through_untouched() {
        let args = parse("--python /v/bin/python --count 500 --concurrency 4");
        assert_eq!(args.python, Some(PathBuf::from("/v/bin/python")));
        assert_eq!(args.load_args, ["--count", "500", "--concurrency", "4"]);
    }

    #[test]
    fn without_arguments_load_gets_none_and_the_python_is_left_to_the_default() {
        let args = parse("");
        assert_eq!(args.python, None);
        assert!(args.load_args.is_empty());
    }

    #[test]
    fn the_two_free_ports_differ_and_can_be_bound_again() {
        let (port, aws_port) = free_ports().unwrap();
        assert_ne!(port, aws_port);
        assert_ne!(port, 0);
        for p in [port, aws_port] {
            TcpListener::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
        }
    }

    #[test]
    fn a_port_answers_http_only_when_its_server_sends_a_status_line() {
        let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = server.local_addr().unwrap().port();
        let serving = std::thread::spawn(move || {
            for reply in [&b"HTTP/1.1 404 Not Found\r\n\r\n"[..], b"SSH-2.0\r\n"] {
                let (mut stream, _) = server.accept().unwrap();
                let mut request = [0u8; 18];
                stream.read_exact(&mut request).unwrap();
                assert_eq!(&request, b"GET / HTTP/1.0\r\n\r\n");
                stream.write_all(reply).unwrap();
            }
        });
        assert!(answers_http(port));
        assert!(!answers_http(port));
        serving.join().unwrap();
        assert!(!answers_http(port), "nothing listens any more");
    }

    #[test]
    fn the_tail_is_the_last_lines_or_all_of_a_short_log() {
        let log: String = (1..=30).map(|n| format!("line {n}\n")).collect();
        let tail20 = tail(log.as_bytes(), 20);
        assert_eq!(tail20.lines().count(), 20);
        assert!(tail20.starts_with("line 11\n") && tail20.ends_with("line 30"));
        assert_eq!(tail(b"one\ntwo\n", 20), "one\ntwo");
    }

    #[test]
    fn saved_files_are_put_back_as_they_were_and_new_ones_removed() {
        let temp = tempfile::tempdir().unwrap();
        let local = temp.path().join(".local");
        std::fs::create_dir(&local).unwrap();
        let stack = local.join("stack.json");
        std::fs::write(&stack, "make local's").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        File::options()
            .write(true)
            .open(&stack)
            .unwrap()
            .set_modified(old)
            .unwrap();

        let saved = Saved::take(&local, &STATE_FILES, temp.path()).unwrap();
        let aside = saved.aside.clone();
        std::fs::write(&stack, "bench-load's").unwrap();
        std::fs::write(local.join("functions.env"), "bench-load's").unwrap();
        drop(saved);

        assert_eq!(std::fs::read_to_string(&stack).unwrap(), "make local's");
        assert_eq!(std::fs::metadata(&stack).unwrap().modified().unwrap(), old);
        assert!(!local.join("functions.env").exists());
        assert!(!aside.exists(), "the copies aside are removed");
    }

    #[test]
    fn with_nothing_saved_and_nothing_written_putting_back_leaves_nothing_behind() {
        let temp = tempfile::tempdir().unwrap();
        let local = temp.path().join(".local");
        std::fs::create_dir(&local).unwrap();
        let saved = Saved::take(&local, &STATE_FILES, temp.path()).unwrap();
        assert!(saved.aside.is_dir());
        drop(saved);
        let left: Vec<_> = std::fs::read_dir(temp.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(left, [".local"]);
        assert_eq!(std::fs::read_dir(&local).unwrap().count(), 0);
    }

    #[test]
    fn a_stopped_process_is_ended_even_if_it_ignores_sigterm() {
        // exec: sleep itself inherits the ignored SIGTERM, and nothing is left behind.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; exec sleep 30"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let begun = Instant::now();
        stop(&mut child, Duration::from_secs(1));
        let status = child.try_wait().unwrap().expect("ended");
        assert_eq!(
            exit_code(status),
            128 + 9,
            "killed after SIGTERM was ignored"
        );
        assert!(begun.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_stopped_process_that_heeds_sigterm_ends_by_it() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        stop(&mut child, Duration::from_secs(10));
        let status = child.try_wait().unwrap().expect("ended");
        assert_eq!(exit_code(status), 128 + 15);
    }
}
