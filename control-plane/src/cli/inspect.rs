//! `inspect` of several names, docker's way (docker/cli `cli/command/inspect`): every name is
//! looked up in order, every object found is printed, and each name that was not found is
//! then reported, one `Error: No such KIND: NAME` line each, with a failing exit status.

use super::output::CliFailure;

/// What the lookups of an `inspect` found, in the order of the names given.
#[derive(Debug)]
pub struct Lookups<T> {
    pub found: Vec<T>,
    missing: Vec<String>,
}

impl<T> Lookups<T> {
    /// Looks every name up; `look_up` answers `None` for a name that names nothing. Any other
    /// failure (the daemon unreachable, a refused call) ends the command at once.
    pub async fn of(
        names: &[String],
        mut look_up: impl AsyncFnMut(&str) -> Result<Option<T>, CliFailure>,
    ) -> Result<Self, CliFailure> {
        let mut lookups = Self {
            found: Vec::with_capacity(names.len()),
            missing: Vec::new(),
        };
        for name in names {
            match look_up(name).await? {
                Some(object) => lookups.found.push(object),
                None => lookups.missing.push(name.clone()),
            }
        }
        Ok(lookups)
    }

    /// Success when every name was found; otherwise docker's error, a line per missing name.
    pub fn finish(self, kind: &str) -> Result<(), CliFailure> {
        if self.missing.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = self
            .missing
            .iter()
            .map(|name| format!("Error: No such {kind}: {name}"))
            .collect();
        Err(CliFailure::Usage(lines.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn every_name_is_looked_up_and_each_missing_one_is_reported() {
        let mut asked = Vec::new();
        let lookups = Lookups::of(&names(&["a", "nope", "b", "gone"]), async |name: &str| {
            asked.push(name.to_owned());
            Ok((name.len() == 1).then(|| name.to_uppercase()))
        })
        .await
        .expect("lookups");
        assert_eq!(asked, ["a", "nope", "b", "gone"]);
        assert_eq!(lookups.found, ["A", "B"]);
        match lookups.finish("volume") {
            Err(CliFailure::Usage(message)) => assert_eq!(
                message,
                "Error: No such volume: nope\nError: No such volume: gone"
            ),
            other => panic!("expected the missing names, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn all_found_succeeds_and_a_failed_call_ends_the_command() {
        let found = Lookups::of(&names(&["a"]), async |name: &str| Ok(Some(name.to_owned())))
            .await
            .expect("lookups");
        assert!(found.finish("image").is_ok());
        let failed = Lookups::<String>::of(&names(&["a", "b"]), async |_: &str| {
            Err(CliFailure::Usage("daemon down".into()))
        })
        .await;
        assert!(matches!(failed, Err(CliFailure::Usage(m)) if m == "daemon down"));
    }
}
