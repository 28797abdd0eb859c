//! Reading the unlock key for `hive swarm unlock`, as docker does: from the terminal, after
//! `Enter unlock key: ` and without echo; else the whole of stdin.

use std::io::{self, BufRead as _, IsTerminal as _, Read as _, Write as _};

/// The key the user typed or piped, trimmed.
pub fn read_unlock_key() -> io::Result<String> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        let mut key = String::new();
        stdin.lock().read_to_string(&mut key)?;
        return Ok(key.trim().to_owned());
    }
    eprint!("Enter unlock key: ");
    io::stderr().flush()?;
    let echo = EchoOff::new();
    let mut key = String::new();
    let read = stdin.lock().read_line(&mut key);
    drop(echo);
    eprintln!();
    read?;
    Ok(key.trim().to_owned())
}

/// Turns the terminal's echo off on stdin until dropped (when stdin is a terminal).
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> Self {
        // SAFETY: termios is plain data; tcgetattr fills it and reports failure by its return.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 is stdin, `saved` is a valid termios to write into.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return Self(None);
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: `quiet` is a termios obtained from tcgetattr with one flag changed.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) } != 0 {
            return Self(None);
        }
        Self(Some(saved))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings tcgetattr returned for the same descriptor.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
        }
    }
}
