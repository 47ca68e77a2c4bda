//! Reporters for a test run: pretty text for people, JSON for tools, JUnit XML for CI systems;
//! and the line-coverage summary.

use std::fmt::Write as _;

use clap::ValueEnum;
use serde_json::json;

use super::{Outcome, RunReport, TestResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Pretty,
    Json,
    Junit,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub errors: usize,
    pub skipped: usize,
}

impl Counts {
    pub fn of(results: &[TestResult]) -> Self {
        let mut counts = Counts::default();
        for result in results {
            match result.outcome {
                Outcome::Pass => counts.passed += 1,
                Outcome::Fail(_) => counts.failed += 1,
                Outcome::Error(_) => counts.errors += 1,
                Outcome::Skip => counts.skipped += 1,
            }
        }
        counts
    }

    pub fn total(&self) -> usize {
        self.passed + self.failed + self.errors + self.skipped
    }
}

/// Per-file and overall line coverage.
#[derive(Debug, Clone)]
pub struct CoverageSummary {
    pub files: Vec<(String, usize, usize, Vec<u32>)>,
    pub percent: f64,
}

impl CoverageSummary {
    /// Test files (`*_test.rego`) are left out: they cover themselves.
    pub fn of(report: &regorus::coverage::Report) -> Self {
        let mut files = Vec::new();
        let (mut covered, mut total) = (0, 0);
        for file in report.files.iter().filter(|f| !f.path.ends_with("_test.rego")) {
            let lines = file.covered.len() + file.not_covered.len();
            covered += file.covered.len();
            total += lines;
            files.push((file.path.clone(), file.covered.len(), lines, file.not_covered.iter().copied().collect()));
        }
        files.sort();
        let percent = if total == 0 { 100.0 } else { covered as f64 * 100.0 / total as f64 };
        Self { files, percent }
    }
}

pub fn render(format: Format, report: &RunReport, coverage: Option<&CoverageSummary>) -> String {
    match format {
        Format::Pretty => pretty(report, coverage),
        Format::Json => json(report, coverage),
        Format::Junit => junit(report),
    }
}

fn label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "PASS",
        Outcome::Fail(_) => "FAIL",
        Outcome::Error(_) => "ERROR",
        Outcome::Skip => "SKIP",
    }
}

fn message(outcome: &Outcome) -> Option<&str> {
    match outcome {
        Outcome::Fail(m) | Outcome::Error(m) => Some(m),
        _ => None,
    }
}

fn pretty(report: &RunReport, coverage: Option<&CoverageSummary>) -> String {
    let mut out = String::new();
    for result in &report.results {
        let ms = result.duration.as_secs_f64() * 1000.0;
        let _ = writeln!(out, "{:<5} {} ({ms:.1} ms)", label(&result.outcome), result.name);
        if let Some(message) = message(&result.outcome) {
            let _ = writeln!(out, "      at {}", result.location);
            for line in message.lines() {
                let _ = writeln!(out, "      {line}");
            }
            for line in &result.prints {
                let _ = writeln!(out, "      print: {line}");
            }
        }
    }
    if let Some(coverage) = coverage {
        let _ = writeln!(out, "\ncoverage: {:.1}%", coverage.percent);
        for (path, covered, lines, uncovered) in &coverage.files {
            let percent = if *lines == 0 { 100.0 } else { *covered as f64 * 100.0 / *lines as f64 };
            let _ = write!(out, "  {path}: {percent:.1}% ({covered}/{lines})");
            if !uncovered.is_empty() {
                let _ = write!(out, ", not covered: {}", ranges(uncovered));
            }
            out.push('\n');
        }
    }
    let counts = Counts::of(&report.results);
    if counts.errors > 0 {
        let _ = writeln!(out, "\n{} of the failures are errors", counts.errors);
    }
    let _ = writeln!(
        out,
        "\n{} passed, {} failed, {} skipped",
        counts.passed,
        counts.failed + counts.errors,
        counts.skipped
    );
    out
}

/// `3, 7-9, 12`.
fn ranges(lines: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = lines[i];
        let mut end = start;
        while i + 1 < lines.len() && lines[i + 1] == end + 1 {
            i += 1;
            end = lines[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    parts.join(", ")
}

fn json(report: &RunReport, coverage: Option<&CoverageSummary>) -> String {
    let results: Vec<_> = report
        .results
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "suite": r.suite,
                "location": r.location,
                "outcome": label(&r.outcome).to_lowercase(),
                "message": message(&r.outcome),
                "duration_ms": r.duration.as_secs_f64() * 1000.0,
                "prints": r.prints,
            })
        })
        .collect();
    let counts = Counts::of(&report.results);
    let coverage = coverage.map(|c| {
        json!({
            "percent": c.percent,
            "files": c.files.iter().map(|(path, covered, lines, uncovered)| json!({
                "path": path, "covered": covered, "lines": lines, "not_covered": uncovered,
            })).collect::<Vec<_>>(),
        })
    });
    let summary =
        json!({"passed": counts.passed, "failed": counts.failed, "errors": counts.errors, "skipped": counts.skipped});
    let document = json!({"results": results, "summary": summary, "coverage": coverage});
    serde_json::to_string_pretty(&document).unwrap_or_default() + "\n"
}

fn junit(report: &RunReport) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"cosigner-guard\">\n");
    for suite in ["rego", "fixture", "mutation"] {
        let results: Vec<&TestResult> = report.results.iter().filter(|r| r.suite == suite).collect();
        let counts = Counts::of(&results.iter().map(|r| (*r).clone()).collect::<Vec<_>>());
        let time: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{time:.6}\">",
            counts.total(),
            counts.failed,
            counts.errors,
            counts.skipped
        );
        for result in results {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.6}\"",
                xml(&result.name),
                xml(&result.location),
                result.duration.as_secs_f64()
            );
            let detail = || {
                let mut text = result.location.clone();
                for line in &result.prints {
                    text.push_str("\nprint: ");
                    text.push_str(line);
                }
                xml(&text)
            };
            match &result.outcome {
                Outcome::Pass => out.push_str("/>\n"),
                Outcome::Skip => out.push_str(">\n      <skipped/>\n    </testcase>\n"),
                Outcome::Fail(m) => {
                    let _ = write!(
                        out,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                        xml(m),
                        detail()
                    );
                }
                Outcome::Error(m) => {
                    let _ =
                        write!(out, ">\n      <error message=\"{}\">{}</error>\n    </testcase>\n", xml(m), detail());
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncovered_lines_are_shown_as_ranges() {
        assert_eq!(ranges(&[3, 7, 8, 9, 12]), "3, 7-9, 12");
    }

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(xml("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }
}
