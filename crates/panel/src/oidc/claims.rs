//! What the panel reads of a person at the identity provider: their e-mail address, whether
//! the provider vouches for it, and their groups. Each may come from the ID token or, when it
//! lacks them, from the userinfo endpoint (OpenID Connect Core §5.4: scope claims may be
//! served by userinfo only, as LemonLDAP::NG does by default).

use alveole_model::Role;
use serde_json::Value;

/// The claims the panel uses, wherever they came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Person {
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    /// The groups claim as sent (a list, a space-separated string, or an object).
    pub groups: Option<Value>,
}

impl Person {
    /// The claims this person lacks that the panel needs: `email` and `email_verified` to
    /// link a new account, the groups claim when roles follow groups.
    pub fn missing(&self, groups_claim: &str, want_groups: bool) -> Vec<String> {
        let mut missing = Vec::new();
        if self.email.is_none() {
            missing.push("email".to_owned());
        }
        if self.email_verified.is_none() {
            missing.push("email_verified".to_owned());
        }
        if want_groups && self.groups.is_none() {
            missing.push(groups_claim.to_owned());
        }
        missing
    }

    /// Fills what this person lacks from `other` (what the ID token says wins).
    pub fn complete_from(&mut self, other: Person) {
        self.email = self.email.take().or(other.email);
        self.email_verified = self.email_verified.or(other.email_verified);
        self.groups = self.groups.take().or(other.groups);
    }
}

/// Group names from the groups claim: a list of names, a space-separated string, or an object
/// whose keys are the names (LemonLDAP::NG's `hGroups`). Anything else is an error that says
/// what arrived.
pub fn group_names(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(name) => Ok(name.clone()),
                other => Err(format!(
                    "a list whose items are not all names ({})",
                    kind(other)
                )),
            })
            .collect(),
        Value::String(names) => Ok(names.split_whitespace().map(str::to_owned).collect()),
        Value::Object(groups) => Ok(groups.keys().cloned().collect()),
        other => Err(format!(
            "{}, where a list, a space-separated string or an object of groups was expected",
            kind(other)
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The highest role any of the groups maps to (admin, then auditor); member otherwise.
pub fn role_of(groups: &[String], roles: &[(String, Role)]) -> Role {
    let mapped: Vec<Role> = roles
        .iter()
        .filter(|(group, _)| groups.contains(group))
        .map(|(_, role)| *role)
        .collect();
    [Role::Admin, Role::Auditor]
        .into_iter()
        .find(|r| mapped.contains(r))
        .unwrap_or(Role::Member)
}

/// `group=role,group=role` as the command line takes it.
pub fn parse_roles(text: &str) -> Result<Vec<(String, Role)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (group, role) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?}: write group=role"))?;
            let role = match role.trim() {
                "admin" => Role::Admin,
                "auditor" => Role::Auditor,
                "member" => Role::Member,
                other => return Err(format!("{other:?} is not a role (admin, auditor, member)")),
            };
            Ok((group.trim().to_owned(), role))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn groups_map_to_the_highest_role() {
        let roles = parse_roles("coop-admins=admin, board=auditor").unwrap();
        let role = |groups: &[&str]| {
            role_of(
                &groups.iter().map(|g| (*g).to_owned()).collect::<Vec<_>>(),
                &roles,
            )
        };
        assert_eq!(role(&["board", "coop-admins"]), Role::Admin);
        assert_eq!(role(&["board"]), Role::Auditor);
        assert_eq!(role(&["members"]), Role::Member);
        assert!(parse_roles("admins").is_err());
        assert!(parse_roles("admins=root").is_err());
    }

    #[test]
    fn groups_arrive_as_a_list_a_string_or_an_object() {
        assert_eq!(group_names(&json!(["board", "x"])).unwrap(), ["board", "x"]);
        assert_eq!(group_names(&json!("board  x")).unwrap(), ["board", "x"]);
        assert_eq!(group_names(&json!("board")).unwrap(), ["board"]);
        let object = json!({"coop-admins": {"name": "coop-admins"}, "board": {"name": "board"}});
        let mut names = group_names(&object).unwrap();
        names.sort();
        assert_eq!(names, ["board", "coop-admins"]);
        assert!(group_names(&json!([])).unwrap().is_empty());
        for (odd, says) in [
            (json!(3), "a number"),
            (json!(["board", 3]), "not all names"),
            (json!(null), "null"),
        ] {
            let error = group_names(&odd).unwrap_err();
            assert!(error.contains(says), "{odd}: {error}");
        }
    }

    #[test]
    fn what_the_id_token_lacks_is_taken_from_userinfo() {
        let mut person = Person {
            email: Some("ana@example.org".into()),
            ..Person::default()
        };
        assert_eq!(person.missing("groups", true), ["email_verified", "groups"]);
        assert_eq!(person.missing("groups", false), ["email_verified"]);
        person.complete_from(Person {
            email: Some("other@example.org".into()),
            email_verified: Some(true),
            groups: Some(json!(["board"])),
        });
        assert_eq!(person.email.as_deref(), Some("ana@example.org"));
        assert_eq!(person.email_verified, Some(true));
        assert!(person.missing("groups", true).is_empty());
    }
}
