//! The terminal a person started the app from. Native libraries print straight to
//! standard error, past our log: alsa-lib looking for sound cards that do not exist, the
//! JACK client looking for a server, on every device scan. While the window is open,
//! standard error is a pipe; a thread passes every line on to the terminal except that
//! noise, which goes to the log at debug level (`RUST_LOG=confab::native=debug`). Our own
//! log is written to the terminal directly ([`stderr`]).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread::JoinHandle;

/// Where the terminal is: standard error, or a copy of it while it is a pipe.
static TERMINAL: AtomicI32 = AtomicI32::new(libc::STDERR_FILENO);

/// The log's writer: always the terminal, never the pipe.
pub fn stderr() -> Terminal {
    Terminal
}

pub struct Terminal;

impl Write for Terminal {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fd = TERMINAL.load(Ordering::Acquire);
        // SAFETY: writes from a live buffer to a descriptor we keep open while it is used.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Lines that native libraries print on their own, not errors of ours.
pub fn is_native_noise(line: &str) -> bool {
    const NOISE: [&str; 6] = [
        "ALSA lib ",
        "Cannot connect to server socket",
        "Cannot connect to server request channel",
        "jack server is not running",
        "JackShmReadWritePtr",
        "Cannot open device /dev/dsp",
    ];
    NOISE.iter().any(|n| line.starts_with(n))
}

/// While alive, standard error is filtered; dropping it restores the terminal and passes
/// on whatever is still in the pipe.
pub struct QuietConsole {
    terminal: RawFd,
    thread: Option<JoinHandle<()>>,
}

/// Filters standard error until the guard drops; None (and nothing changed) if the pipe
/// cannot be made.
pub fn quiet_native_noise() -> Option<QuietConsole> {
    let mut fds = [0; 2];
    // SAFETY: plain descriptor calls; each result is checked before use.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return None;
        }
        let terminal = libc::dup(libc::STDERR_FILENO);
        if terminal < 0 || libc::dup2(fds[1], libc::STDERR_FILENO) < 0 {
            libc::close(fds[0]);
            libc::close(fds[1]);
            if terminal >= 0 {
                libc::close(terminal);
            }
            return None;
        }
        // Standard error is the pipe's only writer now: closing it ends the thread.
        libc::close(fds[1]);
        TERMINAL.store(terminal, Ordering::Release);
        let pipe = File::from_raw_fd(fds[0]);
        let thread = std::thread::Builder::new()
            .name("console".into())
            .spawn(move || pass_on(pipe))
            .ok();
        Some(QuietConsole { terminal, thread })
    }
}

fn pass_on(pipe: File) {
    let mut lines = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        if is_native_noise(&text) {
            tracing::debug!(target: "confab::native", "{}", text.trim_end());
        } else {
            let _ = stderr().write_all(&line);
        }
    }
}

impl Drop for QuietConsole {
    fn drop(&mut self) {
        let _ = io::stderr().flush();
        // SAFETY: puts the saved terminal back as standard error; that closes the pipe's
        // last writer, so the thread drains it and ends.
        unsafe {
            libc::dup2(self.terminal, libc::STDERR_FILENO);
        }
        // A child process that inherited the pipe would keep it open: wait half a
        // second at most, then leave the thread behind.
        if let Some(t) = self.thread.take() {
            for _ in 0..50 {
                if t.is_finished() {
                    let _ = t.join();
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        TERMINAL.store(libc::STDERR_FILENO, Ordering::Release);
        // SAFETY: our copy, no longer used by anyone.
        unsafe {
            libc::close(self.terminal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alsa_and_jack_chatter_is_noise_and_our_words_are_not() {
        for noise in [
            "ALSA lib confmisc.c:165:(snd_config_get_card) Cannot get card index for 0",
            "ALSA lib pulse.c:242:(pulse_connect) PulseAudio: Unable to connect: Connection refused",
            "Cannot connect to server socket err = No such file or directory",
            "jack server is not running or cannot be started",
            "JackShmReadWritePtr::~JackShmReadWritePtr - Init not done for -1, skipping unlock",
        ] {
            assert!(is_native_noise(noise), "{noise}");
        }
        for ours in [
            "thread 'main' panicked at src/ui/app.rs:10:5:",
            "Error: no camera",
            "2026-12-02T16:26:19Z  WARN confab::ui: ALSA lib says no",
        ] {
            assert!(!is_native_noise(ours), "{ours}");
        }
    }
}
