//! Docker's text formats, shared by the swarm, node and info commands: tables as docker's
//! tabwriter lays them out, Go durations, human durations and sizes, timestamps.

use std::io::Write as _;
use std::time::Duration;

use tabwriter::TabWriter;
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use crate::api::pb;
use crate::client::ClientError;

/// docker's `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`: a column is at least 10 wide and its
/// cells are 3 spaces apart.
const DOCKER_MIN_WIDTH: usize = 10;
const DOCKER_PADDING: usize = 3;

/// Rows as docker's tabwriter prints them: every column but the last padded to its widest cell
/// plus 3 spaces, and at least 10 wide; no trailing spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    // Go pads a cell to `max(width + padding, minwidth)`, the tabwriter crate to
    // `max(width, minwidth) + padding`: the same column with `minwidth - padding`.
    aligned(rows, DOCKER_MIN_WIDTH - DOCKER_PADDING, DOCKER_PADDING)
}

/// Left-aligned columns laid out by the `tabwriter` crate (the port of Go's
/// `text/tabwriter`): each column but the last as wide as its widest cell (at least
/// `min_width`) plus `padding` spaces. Line ends are trimmed, as docker's output shows them.
pub fn aligned<R: AsRef<[C]>, C: AsRef<str>>(
    rows: &[R],
    min_width: usize,
    padding: usize,
) -> String {
    let mut laid_out = Vec::new();
    let mut writer = TabWriter::new(&mut laid_out)
        .minwidth(min_width)
        .padding(padding);
    for row in rows {
        let cells: Vec<&str> = row.as_ref().iter().map(AsRef::as_ref).collect();
        // Writing into a Vec cannot fail.
        let _ = writeln!(writer, "{}", cells.join("\t"));
    }
    let _ = writer.flush();
    drop(writer);
    String::from_utf8_lossy(&laid_out)
        .lines()
        .map(|line| format!("{}\n", line.trim_end()))
        .collect()
}

/// Go's `time.ParseDuration` syntax: `5s`, `1m30s`, `2160h`, `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration \"{text}\": use a number with a unit (ns, us, ms, s, m, h), e.g. 5s or 1h30m"
        )
    };
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// docker's `units.HumanDuration` ("5 seconds", "3 months").
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = (d.as_secs_f64() / 3600.0).round() as u64;
    match seconds {
        0 => "Less than a second".to_owned(),
        1 => "1 second".to_owned(),
        2..=59 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".to_owned(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_owned(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

/// docker's `units.BytesSize` ("7.761GiB").
pub fn bytes_size(bytes: i64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.4}");
    let digits_before_point = text.find('.').unwrap_or(text.len());
    let keep = 4usize.saturating_sub(digits_before_point);
    let mut text = format!("{value:.keep$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{text}{}", UNITS[unit])
}

/// The instant of a protobuf timestamp, UTC (`None`: the Unix epoch, as Go's zero
/// `Timestamp` converts). `Err` holds the text shown for a time the `time` crate cannot
/// represent (beyond the years ±9999).
fn utc(t: Option<&pb::Timestamp>) -> Result<OffsetDateTime, String> {
    let t = t.copied().unwrap_or_default();
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(|_| format!("<time out of range: {}s since the Unix epoch>", t.seconds))
}

/// RFC 3339 with nanoseconds (trailing zeros dropped), as the docker API's JSON shows times.
pub fn rfc3339(t: Option<&pb::Timestamp>) -> String {
    utc(t)
        .and_then(|at| at.format(&Rfc3339).map_err(|err| err.to_string()))
        .unwrap_or_else(|text| text)
}

/// Go's `time.Time.String()` in UTC, as `node inspect --pretty` shows "Joined at".
pub fn go_time(t: Option<&pb::Timestamp>) -> String {
    const WHOLE_SECONDS: &[BorrowedFormatItem<'_>] =
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    const FRACTION: &[BorrowedFormatItem<'_>] = format_description!(".[subsecond digits:1+]");
    let text = utc(t).and_then(|at| {
        let mut text = at.format(WHOLE_SECONDS).map_err(|err| err.to_string())?;
        if at.nanosecond() > 0 {
            text.push_str(&at.format(FRACTION).map_err(|err| err.to_string())?);
        }
        Ok(text)
    });
    match text {
        Ok(text) => format!("{text} +0000 utc"),
        Err(text) => text,
    }
}

/// Capitalises the first letter (docker's `command.PrettyPrint`).
pub fn pretty(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Runs a CLI command's async body on a small runtime, printing a daemon error the way docker
/// does (without anyhow's `Error:` prefix) and exiting 1.
pub fn run_client<F>(body: F) -> anyhow::Result<std::process::ExitCode>
where
    F: std::future::Future<Output = Result<(), CliFailure>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(body) {
        Ok(()) => Ok(std::process::ExitCode::SUCCESS),
        Err(CliFailure::Client(err)) => {
            eprintln!("{err}");
            Ok(std::process::ExitCode::FAILURE)
        }
        Err(CliFailure::Usage(message)) => {
            eprintln!("{message}");
            Ok(std::process::ExitCode::FAILURE)
        }
    }
}

/// Why a client command failed.
#[derive(Debug)]
pub enum CliFailure {
    Client(ClientError),
    Usage(String),
}

impl From<ClientError> for CliFailure {
    fn from(err: ClientError) -> Self {
        Self::Client(err)
    }
}

impl From<tonic::Status> for CliFailure {
    fn from(status: tonic::Status) -> Self {
        Self::Client(ClientError::Daemon(status))
    }
}

/// Writes to stdout; false once the reader went away (`| head`), which is not an error.
pub fn out(text: &str) -> bool {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_ok()
}

/// JSON indented with four spaces, as docker prints it.
pub fn indent_json(value: &impl serde::Serialize) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    if value.serialize(&mut serializer).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_like_dockers_tabwriter() {
        let rows = vec![
            vec![
                "ID".into(),
                "HOSTNAME".into(),
                "STATUS".into(),
                "ENGINE VERSION".into(),
            ],
            vec![
                "yg550ettvsjn6g6t840iaiwgb *".into(),
                "swarm-test-01".into(),
                "Ready".into(),
                "23.0.3".into(),
            ],
        ];
        assert_eq!(
            table(&rows),
            "ID                            HOSTNAME        STATUS    ENGINE VERSION\n\
             yg550ettvsjn6g6t840iaiwgb *   swarm-test-01   Ready     23.0.3\n"
        );
    }

    #[test]
    fn aligned_columns_are_as_wide_as_their_widest_cell_plus_padding() {
        let rows = [["LAB", "NODE", "MAC"], ["hive", "n1", "02:00:00:00:00:01"]];
        assert_eq!(
            aligned(&rows, 0, 3),
            "LAB    NODE   MAC\nhive   n1     02:00:00:00:00:01\n"
        );
        assert_eq!(
            table(&[
                vec!["A".into(), String::new()],
                vec!["B".into(), "x".into()]
            ]),
            "A\nB         x\n",
            "at least 10 wide, no trailing spaces"
        );
    }

    #[test]
    fn durations_parse_and_print_like_go_and_docker() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(
            parse_duration("2160h0m0s").unwrap(),
            Duration::from_secs(2160 * 3600)
        );
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert_eq!(human_duration(Duration::from_secs(5)), "5 seconds");
        assert_eq!(human_duration(Duration::from_secs(2160 * 3600)), "3 months");
    }

    #[test]
    fn times_and_sizes() {
        let t = pb::Timestamp {
            seconds: 1_257_894_000,
            nanos: 0,
        };
        assert_eq!(rfc3339(Some(&t)), "2009-11-10T23:00:00Z");
        assert_eq!(go_time(Some(&t)), "2009-11-10 23:00:00 +0000 utc");
        let t = pb::Timestamp {
            seconds: 1_257_894_000,
            nanos: 120_000_000,
        };
        assert_eq!(rfc3339(Some(&t)), "2009-11-10T23:00:00.12Z");
        assert_eq!(go_time(Some(&t)), "2009-11-10 23:00:00.12 +0000 utc");
        assert_eq!(rfc3339(None), "1970-01-01T00:00:00Z");
        assert_eq!(bytes_size(20 * 1024 * 1024), "20MiB");
        assert_eq!(bytes_size(8_333_000_000), "7.761GiB");
    }
}
