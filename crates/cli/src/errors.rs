//! How an error reaches the user: its message and each distinct cause once, no backtrace.

/// The text printed for a failed command: `error: <message>` and one `  caused by: <cause>` line
/// per cause whose text is not already part of a line above (a context that quotes its source,
/// as "cannot open x: No such file (os error 2)", is not followed by the source again). Never a
/// backtrace, even when `RUST_BACKTRACE` is set: these are the user's errors (bad input, missing
/// files); a panic, an internal error, keeps the standard hook and its backtrace.
pub fn report(e: &anyhow::Error) -> String {
    let mut shown: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || shown.iter().any(|s| s.contains(text)) {
            continue;
        }
        shown.push(text.to_string());
    }
    let mut out = String::new();
    for (i, s) in shown.iter().enumerate() {
        let prefix = if i == 0 { "error: " } else { "  caused by: " };
        // Continuation lines of a multi-line message keep its indentation under the prefix.
        for (j, line) in s.lines().enumerate() {
            if j == 0 {
                out.push_str(prefix);
            } else if i > 0 {
                out.push_str("  ");
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::report;
    use anyhow::Context;

    #[test]
    fn each_cause_once_and_quoted_causes_dropped() {
        let io = std::fs::read("/definitely/not/here").unwrap_err();
        let text = io.to_string();
        let e = Err::<(), _>(io)
            .with_context(|| format!("cannot open /definitely/not/here: {text}"))
            .context("training data (data.train)")
            .unwrap_err();
        let r = report(&e);
        assert_eq!(
            r,
            format!(
                "error: training data (data.train)\n  caused by: cannot open /definitely/not/here: {text}\n"
            )
        );
        assert_eq!(r.matches("os error 2").count(), 1, "{r}");
    }
}
