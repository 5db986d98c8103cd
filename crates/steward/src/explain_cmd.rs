//! `steward explain`: streams files (or stdin) through the explainer, line by line, so a
//! multi-GB journal costs bounded memory.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;
use steward_explain::{Explainer, Since};

/// Longest line kept whole; the rest of a longer line is skipped, not buffered.
const MAX_LINE: usize = 64 * 1024;

/// What `explain` reads: files, standard input (`-`), or the names of services.
pub struct Sources<'a> {
    pub args: &'a [PathBuf],
    /// Where services' logs are, for an argument that is not a file.
    pub target: &'a crate::cli::Target,
    /// How many of a service's latest runs to read.
    pub runs: usize,
}

pub fn run(sources: &Sources, json: bool, top: usize, since: Option<&str>) -> Result<ExitCode> {
    let files = sources.args;
    let now = SystemTime::now();
    let since = since
        .map(|s| steward_explain::parse_since(s, now))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let mut filter = Since::new(since, now);
    let mut ex = Explainer::new();
    if files.is_empty() || files.iter().any(|f| f.as_os_str() == "-") {
        feed(&mut ex, &mut filter, std::io::stdin().lock())
            .context("cannot read standard input")?;
    }
    for f in files.iter().filter(|f| f.as_os_str() != "-") {
        if !f.exists() && f.components().count() == 1 {
            // Not a file: the name of a service, whose latest run is read.
            let name = f.to_string_lossy();
            let state_dir = crate::target::state_dir(sources.target).with_context(|| {
                format!(
                    "{} is not a file; to read a service's output, give its config with -f",
                    f.display()
                )
            })?;
            if !crate::explain_service::is_service(&state_dir, &name) {
                anyhow::bail!(
                    "{} is neither a file nor a service with logs in {state_dir}",
                    f.display()
                );
            }
            for input in crate::explain_service::inputs(&state_dir, &name, sources.runs)? {
                feed(&mut ex, &mut filter, BufReader::new(input))
                    .with_context(|| format!("reading the logs of {name}"))?;
            }
            continue;
        }
        let file =
            std::fs::File::open(f).with_context(|| format!("cannot read {}", f.display()))?;
        // A file that disappears or is truncated mid-read ends its input there.
        feed(&mut ex, &mut filter, BufReader::new(file))
            .with_context(|| format!("reading {}", f.display()))?;
    }
    let report = ex.finish();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    if report.findings.is_empty() && report.unrecognised.is_empty() {
        println!("nothing recognised in {} line(s)", report.lines);
        return Ok(ExitCode::SUCCESS);
    }
    for (i, f) in report.findings.iter().take(top).enumerate() {
        let label = if f.noise {
            "noise"
        } else if i == 0 {
            "cause"
        } else if f.sympathetic {
            "symptom"
        } else {
            "also"
        };
        let times = if f.count > 1 {
            format!(" (x{})", f.count)
        } else {
            String::new()
        };
        println!("{label}: {} at line {}{times}", f.category, f.line_no);
        println!(
            "  | {}",
            f.line.trim().chars().take(240).collect::<String>()
        );
        println!("  {}", f.explanation);
        if let Some(d) = &f.detail {
            println!("  {d}");
        }
        if !f.fix.is_empty() {
            println!("  fix: {}", f.fix);
        }
    }
    if !report.unrecognised.is_empty() {
        println!("unrecognised errors:");
        for t in report.unrecognised.iter().take(top) {
            println!(
                "  line {} (x{}): {}",
                t.first_line,
                t.count,
                t.example.chars().take(200).collect::<String>()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Feeds `input` line by line; a line longer than [`MAX_LINE`] is cut, and the rest of it
/// is read and dropped without being held.
fn feed(ex: &mut Explainer, since: &mut Since, mut input: impl BufRead) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        let n = (&mut input)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.len() == MAX_LINE && line.last() != Some(&b'\n') {
            // Skip the rest of an overlong line.
            let mut sink = Vec::new();
            loop {
                sink.clear();
                let m = (&mut input)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut sink)?;
                if m == 0 || sink.last() == Some(&b'\n') {
                    break;
                }
            }
        }
        if since.keep(&line) {
            ex.feed(&line);
        }
    }
}
