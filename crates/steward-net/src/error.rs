//! An error and its causes on one line, as people read them in a log or a terminal.

/// `outer: cause: cause`, without repeating a cause that an outer message already quotes
/// (hyper and anyhow both nest errors whose text includes their source's).
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cur = err.source();
    while let Some(cause) = cur {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cur = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn causes_are_joined_once() {
        let e = E(
            "cannot start web: no such file",
            Some(Box::new(E(
                "no such file",
                Some(Box::new(E("os error 2", None))),
            ))),
        );
        assert_eq!(
            super::one_line(&e),
            "cannot start web: no such file: os error 2"
        );
    }
}
