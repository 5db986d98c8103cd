//! The progress bar of `steward run --until-empty` on a terminal: jobs done of all, the
//! rate, the ETA, and how many were quarantined. It stops with the agent.

use std::sync::Arc;
use std::time::Duration;
use steward_pipelines::PipelineRunner;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const REDRAW: Duration = Duration::from_millis(200);

/// Draws until `shutdown`; nothing when stderr is not a terminal.
pub fn start(
    runners: Vec<Arc<PipelineRunner>>,
    mut shutdown: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} jobs done, {per_sec}, ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(tokio::spawn(async move {
        loop {
            let mut counts = steward_queue::Counts::default();
            for r in &runners {
                if let Some(p) = r.progress().await {
                    counts += p.stats.counts;
                }
            }
            bar.set_length(counts.total());
            bar.set_position(counts.finished());
            bar.set_message(if counts.quarantined > 0 {
                format!("({} quarantined)", counts.quarantined)
            } else {
                String::new()
            });
            tokio::select! {
                _ = tokio::time::sleep(REDRAW) => {}
                _ = steward_net::stopped(&mut shutdown) => break,
            }
        }
        bar.finish_and_clear();
    }))
}
