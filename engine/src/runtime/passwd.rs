//! Resolving Docker's `--user` and `--group-add` against a container's
//! /etc/passwd and /etc/group, with the rules Docker applies (runc's
//! `GetExecUser`, plus Docker's own addition of the primary GID to the
//! supplementary groups, the CVE-2022-36109 fix):
//!
//! * `name` or `uid`: the passwd entry gives UID, GID and home; the groups
//!   that list the user's name become supplementary groups. A numeric UID
//!   without an entry runs with GID 0.
//! * `user:group`: the group is looked up by name or taken as a number, and
//!   /etc/group adds no supplementary groups (the group is explicit).

use serde::{Deserialize, Serialize};

/// Highest UID or GID Docker accepts.
const MAX_ID: u64 = i32::MAX as u64;

/// The credentials the container's first process runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, primary GID first, without duplicates.
    pub additional_gids: Vec<u32>,
    /// The user's home directory (for `HOME` when the environment has none).
    pub home: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("uids and gids must be in range 0-{MAX_ID}, not {0}")]
    OutOfRange(String),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

/// Resolves `user` (`""`, `name`, `uid`, `name:group`, `uid:gid`) and
/// `group_add` against the text of /etc/passwd and /etc/group (empty when
/// the image has none).
pub fn resolve(
    user: &str,
    group_add: &[String],
    passwd: &str,
    group: &str,
) -> Result<Credentials, UserError> {
    let (user_arg, group_arg) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g).filter(|g| !g.is_empty())),
        None => (user, None),
    };
    let users: Vec<PasswdEntry> = passwd.lines().filter_map(parse_passwd).collect();
    let groups: Vec<GroupEntry> = group.lines().filter_map(parse_group).collect();

    let mut creds = Credentials {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: "/".to_string(),
    };
    let numeric_user = parse_id(user_arg);
    let found = users.iter().find(|u| match (user_arg, numeric_user) {
        ("", _) => u.uid == 0,
        (_, Some(Ok(uid))) => u.uid == uid,
        (name, _) => u.name == name,
    });
    let matched_name = match (found, numeric_user) {
        (Some(entry), _) => {
            creds.uid = entry.uid;
            creds.gid = entry.gid;
            creds.home = entry.home.to_string();
            Some(entry.name)
        }
        (None, _) if user_arg.is_empty() => None,
        (None, Some(uid)) => {
            creds.uid = uid.map_err(|_| UserError::OutOfRange(user_arg.to_string()))?;
            None
        }
        (None, None) => return Err(UserError::NoUser(user_arg.to_string())),
    };

    let mut supplementary = Vec::new();
    match group_arg {
        Some(arg) => {
            let numeric = parse_id(arg);
            let by_file = groups.iter().find(|g| match numeric {
                Some(Ok(gid)) => g.gid == gid,
                _ => g.name == arg,
            });
            creds.gid = match (by_file, numeric) {
                (Some(g), _) => g.gid,
                (None, Some(gid)) => gid.map_err(|_| UserError::OutOfRange(arg.to_string()))?,
                (None, None) => return Err(UserError::NoGroup(arg.to_string())),
            };
        }
        None => {
            if let Some(name) = matched_name {
                supplementary.extend(
                    groups
                        .iter()
                        .filter(|g| g.members.contains(&name))
                        .map(|g| g.gid),
                );
            }
        }
    }
    for extra in group_add {
        supplementary.push(resolve_group_add(extra, &groups)?);
    }

    creds.additional_gids.push(creds.gid);
    for gid in supplementary {
        if !creds.additional_gids.contains(&gid) {
            creds.additional_gids.push(gid);
        }
    }
    Ok(creds)
}

/// A `--group-add` entry: a group name, a GID listed in /etc/group, or any
/// GID in range.
fn resolve_group_add(arg: &str, groups: &[GroupEntry]) -> Result<u32, UserError> {
    let numeric = parse_id(arg);
    if let Some(g) = groups
        .iter()
        .find(|g| g.name == arg || numeric == Some(Ok(g.gid)))
    {
        return Ok(g.gid);
    }
    match numeric {
        Some(gid) => gid.map_err(|_| UserError::OutOfRange(arg.to_string())),
        None => Err(UserError::NoGroup(arg.to_string())),
    }
}

/// `None` for a name, `Some(Err)` for a number out of range.
fn parse_id(text: &str) -> Option<Result<u32, ()>> {
    let n: u64 = text.parse().ok()?;
    Some(
        u32::try_from(n)
            .ok()
            .filter(|&id| u64::from(id) <= MAX_ID)
            .ok_or(()),
    )
}

fn parse_passwd(line: &str) -> Option<PasswdEntry<'_>> {
    let f: Vec<&str> = line.trim_end().split(':').collect();
    if f.len() < 6 || f[0].is_empty() || line.starts_with('#') {
        return None;
    }
    Some(PasswdEntry {
        name: f[0],
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: f[5],
    })
}

fn parse_group(line: &str) -> Option<GroupEntry<'_>> {
    let f: Vec<&str> = line.trim_end().split(':').collect();
    if f.len() < 3 || f[0].is_empty() || line.starts_with('#') {
        return None;
    }
    Some(GroupEntry {
        name: f[0],
        gid: f[2].parse().ok()?,
        members: f
            .get(3)
            .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
app:x:1000:1000::/home/app:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\n\
app:x:1000:\n\
staff:x:2000:app,other\n\
audio:x:2001:other\n\
video:x:2002:app\n\
nogroup:x:65534:\n";

    fn creds(user: &str, add: &[&str]) -> Result<Credentials, UserError> {
        let add: Vec<String> = add.iter().map(|s| s.to_string()).collect();
        resolve(user, &add, PASSWD, GROUP)
    }

    #[test]
    fn default_user_is_root_with_its_home() -> Result<(), UserError> {
        let c = creds("", &[])?;
        assert_eq!((c.uid, c.gid, c.home.as_str()), (0, 0, "/root"));
        assert_eq!(c.additional_gids, vec![0]);
        Ok(())
    }

    #[test]
    fn a_name_or_uid_brings_groups_that_list_the_user() -> Result<(), UserError> {
        for spec in ["app", "1000"] {
            let c = creds(spec, &[])?;
            assert_eq!((c.uid, c.gid), (1000, 1000), "{spec}");
            assert_eq!(c.additional_gids, vec![1000, 2000, 2002], "{spec}");
            assert_eq!(c.home, "/home/app");
        }
        Ok(())
    }

    #[test]
    fn an_explicit_group_replaces_the_primary_and_adds_none() -> Result<(), UserError> {
        let c = creds("1000:1000", &[])?;
        assert_eq!((c.uid, c.gid), (1000, 1000));
        assert_eq!(c.additional_gids, vec![1000]);
        let c = creds("app:audio", &[])?;
        assert_eq!((c.uid, c.gid), (1000, 2001));
        assert_eq!(c.additional_gids, vec![2001]);
        Ok(())
    }

    #[test]
    fn unknown_numeric_ids_are_taken_as_they_are() -> Result<(), UserError> {
        let c = creds("4242", &[])?;
        assert_eq!((c.uid, c.gid, c.home.as_str()), (4242, 0, "/"));
        let c = creds("4242:4343", &[])?;
        assert_eq!((c.uid, c.gid), (4242, 4343));
        assert_eq!(c.additional_gids, vec![4343]);
        Ok(())
    }

    #[test]
    fn group_add_takes_names_and_numbers() -> Result<(), UserError> {
        let c = creds("app", &["audio", "3000", "staff"])?;
        assert_eq!(c.additional_gids, vec![1000, 2000, 2002, 2001, 3000]);
        Ok(())
    }

    #[test]
    fn unknown_names_and_out_of_range_ids_fail_with_dockers_messages() {
        assert_eq!(
            creds("ghost", &[]).map_err(|e| e.to_string()),
            Err("unable to find user ghost: no matching entries in passwd file".into())
        );
        assert_eq!(
            creds("app:ghosts", &[]),
            Err(UserError::NoGroup("ghosts".into()))
        );
        assert_eq!(
            creds("app", &["ghosts"]),
            Err(UserError::NoGroup("ghosts".into()))
        );
        assert!(matches!(
            creds("4294967296", &[]),
            Err(UserError::OutOfRange(_))
        ));
        assert!(matches!(
            creds("3000000000", &[]),
            Err(UserError::OutOfRange(_))
        ));
    }

    #[test]
    fn missing_files_leave_numeric_users_working() -> Result<(), UserError> {
        let c = resolve("1000:1000", &[], "", "")?;
        assert_eq!((c.uid, c.gid, c.additional_gids), (1000, 1000, vec![1000]));
        assert_eq!(resolve("", &[], "", "")?.uid, 0);
        assert!(resolve("app", &[], "", "").is_err());
        Ok(())
    }
}
