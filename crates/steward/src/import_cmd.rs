//! `steward import`: compose files to a steward.toml, the report on stderr (or as JSON).

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use steward_import::{Options, What};

pub struct ImportOptions {
    pub output: Option<PathBuf>,
    pub force: bool,
    pub json: bool,
    pub strict: bool,
    pub collapse: bool,
}

pub fn run(files: &[PathBuf], o: &ImportOptions) -> Result<ExitCode> {
    if o.json && o.output.is_none() {
        bail!("--json prints the report on standard output; give the steward.toml a file with --output FILE");
    }
    if let Some(out) = &o.output {
        if out.exists() && !o.force {
            bail!(
                "{} exists; import to another file, or add --force to replace it",
                out.display()
            );
        }
    }
    let env = std::env::vars().collect();
    let dir = std::env::current_dir().context("cannot read the current directory")?;
    let imported = steward_import::import(
        files,
        &dir,
        &env,
        Options {
            collapse: o.collapse,
        },
    )?;
    if o.json {
        println!("{}", serde_json::to_string_pretty(&imported.decisions)?);
    } else {
        let mut err = std::io::stderr().lock();
        for line in steward_import::report::lines(&imported.decisions) {
            let _ = writeln!(err, "{line}");
        }
        let cannot = imported.cannot_map();
        let _ = writeln!(
            err,
            "imported {}: {} decision(s), {cannot} thing(s) that cannot be taken over{}",
            imported
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            imported.decisions.len(),
            if imported.decisions.iter().any(|d| d.what == What::Todo) {
                "; services marked TODO are written commented out until they have a command"
            } else {
                ""
            }
        );
    }
    if o.strict && imported.cannot_map() > 0 {
        return Err(steward_import::ImportError::Strict {
            count: imported.cannot_map(),
        }
        .into());
    }
    match &o.output {
        Some(out) => {
            std::fs::write(out, &imported.toml)
                .with_context(|| format!("cannot write {}", out.display()))?;
            if !o.json {
                eprintln!(
                    "wrote {}; check it with `steward config check {}` and `steward plan -f {}`",
                    out.display(),
                    out.display(),
                    out.display()
                );
            }
        }
        None => print!("{}", imported.toml),
    }
    Ok(ExitCode::SUCCESS)
}
