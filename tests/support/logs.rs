//! Following child processes by what they print: a test waits for the line that says
//! something happened, rather than sleeping in the hope that it did.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr};

/// `child`'s standard error, line by line (spawned with `Stdio::piped()`).
pub fn stderr_lines(child: &mut Child) -> Lines<BufReader<ChildStderr>> {
    BufReader::new(child.stderr.take().expect("stderr piped")).lines()
}

/// Reads `lines` until one holds `what` (30 s at most); fails with what came instead.
pub async fn await_line(lines: &mut Lines<impl AsyncBufRead + Unpin>, what: &str) {
    let mut seen = String::new();
    let found = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(what) {
                return true;
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        false
    };
    let found = tokio::time::timeout(Duration::from_secs(30), found).await;
    assert_eq!(found, Ok(true), "never printed {what:?}; printed:\n{seen}");
}

/// The rest of `lines`, gathered in the background until the stream ends.
pub fn rest_of(
    mut lines: Lines<impl AsyncBufRead + Unpin + Send + 'static>,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut all = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push_str(&line);
            all.push('\n');
        }
        all
    })
}

/// Waits for `confab serve`'s first line on standard output (where it listens), then
/// drains the rest in the background so that the server never blocks on its pipe.
pub async fn until_serving(child: &mut Child) {
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the server starts")
        .unwrap()
        .expect("the server says where it listens");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
}
