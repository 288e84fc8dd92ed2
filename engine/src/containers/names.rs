//! The names index: unique container names, and lookup by full ID, unique
//! ID prefix or name, as Docker resolves them.

use std::collections::HashMap;

use super::ids::valid_name;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    Invalid(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    InUse { name: String, id: String },
}

#[derive(Debug, Default)]
pub struct Names {
    by_name: HashMap<String, String>,
}

impl Names {
    /// Claims `name` (a leading `/` is dropped) for `id`.
    pub fn reserve(&mut self, name: &str, id: &str) -> Result<String, NameError> {
        if !valid_name(name) {
            return Err(NameError::Invalid(name.to_string()));
        }
        let name = name.trim_start_matches('/').to_string();
        match self.by_name.get(&name) {
            Some(owner) if owner != id => Err(NameError::InUse {
                name,
                id: owner.clone(),
            }),
            _ => {
                self.by_name.insert(name.clone(), id.to_string());
                Ok(name)
            }
        }
    }

    pub fn release(&mut self, name: &str) {
        self.by_name.remove(name.trim_start_matches('/'));
    }

    pub fn get(&self, name: &str) -> Option<&String> {
        self.by_name.get(name.trim_start_matches('/'))
    }
}

/// Resolves `query` among `ids`: a full ID, a name, or a unique ID prefix.
/// `Err(true)` when a prefix is ambiguous, `Err(false)` when nothing matches.
pub fn resolve<'a>(
    query: &str,
    names: &Names,
    ids: impl Iterator<Item = &'a String> + Clone,
) -> Result<String, bool> {
    if let Some(id) = ids.clone().find(|id| *id == query) {
        return Ok(id.clone());
    }
    if let Some(id) = names.get(query) {
        return Ok(id.clone());
    }
    if query.is_empty() {
        return Err(false);
    }
    let mut found = ids.filter(|id| id.starts_with(query));
    match (found.next(), found.next()) {
        (Some(id), None) => Ok(id.clone()),
        (Some(_), Some(_)) => Err(true),
        _ => Err(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_conflict_and_lookups_follow_docker() {
        let mut n = Names::default();
        let a = "a".repeat(64);
        let b = format!("ab{}", "c".repeat(62));
        assert_eq!(n.reserve("/web", &a), Ok("web".to_string()));
        assert!(matches!(n.reserve("web", &b), Err(NameError::InUse { .. })));
        assert!(matches!(n.reserve("-x", &b), Err(NameError::Invalid(_))));
        let ids = [a.clone(), b.clone()];
        assert_eq!(resolve("web", &n, ids.iter()), Ok(a.clone()));
        assert_eq!(resolve("ab", &n, ids.iter()), Ok(b.clone()));
        assert_eq!(resolve("a", &n, ids.iter()), Err(true));
        assert_eq!(resolve("zz", &n, ids.iter()), Err(false));
        n.release("web");
        assert_eq!(n.reserve("web", &b), Ok("web".to_string()));
    }
}
