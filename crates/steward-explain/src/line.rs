//! One input line as the engine sees it: lossily decoded, `\r` and docker's JSON envelope
//! removed, and bounded in length so a 10 MB line costs no more than 64 KiB.

/// Longest part of a line that is matched.
pub const MAX_LINE: usize = 64 * 1024;

pub fn normalise(raw: &[u8]) -> String {
    let raw = &raw[..raw.len().min(MAX_LINE)];
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches(['\r', '\n']).replace('\r', "");
    // docker's json-file driver: {"log":"…\n","stream":"stderr","time":"…"}
    if text.starts_with('{') && text.contains("\"log\"") {
        if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(&text) {
            if let Some(serde_json::Value::String(log)) = m.get("log") {
                return log.trim_end_matches(['\r', '\n']).to_string();
            }
        }
    }
    text
}
