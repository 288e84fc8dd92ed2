//! Variable lookup for expansion.

use std::collections::{BTreeMap, HashMap};

/// Where expansion looks variables up.
pub trait Env {
    /// The value of `key`, or `None` when it is unset (set-but-empty is `Some("")`).
    fn get(&self, key: &str) -> Option<&str>;
}

/// No variables at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn get(&self, _key: &str) -> Option<&str> {
        None
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

/// An ordered list of `KEY=value` pairs where a later set replaces the value in place,
/// the way an image config's `Env` behaves (order of first definition is kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvList {
    vars: Vec<(String, String)>,
    /// Position of each key in `vars`, so lookups stay cheap for long lists.
    index: HashMap<String, usize>,
}

impl EnvList {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a list from `KEY=value` strings (an image config's `Env`); an entry
    /// without `=` is a variable set to the empty string.
    pub fn from_key_values<'a>(entries: impl IntoIterator<Item = &'a str>) -> Self {
        let mut list = Self::new();
        for entry in entries {
            let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
            list.set(k, v);
        }
        list
    }

    /// Sets `key`, replacing an earlier value in place.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.index.get(key) {
            Some(&i) => self.vars[i].1 = value.to_string(),
            None => {
                self.index.insert(key.to_string(), self.vars.len());
                self.vars.push((key.to_string(), value.to_string()));
            }
        }
    }

    pub fn remove(&mut self, key: &str) {
        if self.index.remove(key).is_some() {
            self.vars.retain(|(k, _)| k != key);
            self.index = self
                .vars
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect();
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// `KEY=value` strings in order, as an image config stores them.
    pub fn to_key_values(&self) -> Vec<String> {
        self.vars.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

impl Env for EnvList {
    fn get(&self, key: &str) -> Option<&str> {
        self.index.get(key).map(|&i| self.vars[i].1.as_str())
    }
}

impl<E: Env + ?Sized> Env for &E {
    fn get(&self, key: &str) -> Option<&str> {
        (**self).get(key)
    }
}
