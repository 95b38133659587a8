//! Members of the co-op, and their role.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Meta;
use crate::error::ValidationErrors;
use crate::ids::MemberId;
use crate::text::{DisplayName, Email};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages their own sites.
    Member,
    /// Manages everything.
    Admin,
    /// Reads everything and exports the audit log; changes nothing; never sees secrets.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Member, Role::Admin, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(input: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == input)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberInput {
    pub display_name: String,
    pub email: String,
    #[serde(default = "default_role")]
    pub role: Role,
}

fn default_role() -> Role {
    Role::Member
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewMember {
    pub display_name: DisplayName,
    pub email: Email,
    pub role: Role,
}

impl MemberInput {
    pub fn validate(self) -> Result<NewMember, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let display_name = errors.check("display_name", DisplayName::parse(&self.display_name));
        let email = errors.check("email", Email::parse(&self.email));
        errors.finish(|| {
            Some(NewMember {
                display_name: display_name?,
                email: email?,
                role: self.role,
            })
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Member {
    pub id: MemberId,
    pub display_name: DisplayName,
    pub email: Email,
    pub role: Role,
    /// Since when the member is disabled (offboarded): their tokens and sessions ended, and
    /// nothing can be created for them until an admin enables them again.
    pub disabled_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub meta: Meta,
}

impl Member {
    pub fn to_input(&self) -> MemberInput {
        MemberInput {
            display_name: self.display_name.to_string(),
            email: self.email.to_string(),
            role: self.role,
        }
    }
}
