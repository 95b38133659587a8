//! Providers: the companies nodes are rented from, with their contracts.

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Meta, optional_text};
use crate::error::{FieldError, ValidationErrors};
use crate::ids::ProviderId;
use crate::text::{CountryCode, DisplayName, Notes};

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderInput {
    pub name: String,
    /// Who to call at the provider (free text).
    #[serde(default)]
    pub contact: Option<String>,
    /// `YYYY-MM-DD`.
    #[serde(default)]
    pub contract_end: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewProvider {
    pub name: DisplayName,
    pub contact: Option<DisplayName>,
    pub contract_end: Option<NaiveDate>,
    pub country: Option<CountryCode>,
    pub notes: Notes,
}

impl ProviderInput {
    pub fn validate(self) -> Result<NewProvider, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let name = errors.check("name", DisplayName::parse(&self.name));
        let contact = optional_text(&mut errors, "contact", self.contact, DisplayName::parse);
        let contract_end =
            optional_text(&mut errors, "contract_end", self.contract_end, parse_date);
        let country = optional_text(&mut errors, "country", self.country, CountryCode::parse);
        let notes = errors.check("notes", Notes::parse(self.notes.as_deref().unwrap_or("")));
        errors.finish(|| {
            Some(NewProvider {
                name: name?,
                contact: contact?,
                contract_end: contract_end?,
                country: country?,
                notes: notes?,
            })
        })
    }
}

fn parse_date(input: &str) -> Result<NaiveDate, FieldError> {
    NaiveDate::parse_from_str(input, "%Y-%m-%d")
        .map_err(|_| FieldError::new("", "date.invalid", "use a date such as 2027-06-30"))
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Provider {
    pub id: ProviderId,
    pub name: DisplayName,
    pub contact: Option<DisplayName>,
    pub contract_end: Option<NaiveDate>,
    pub country: Option<CountryCode>,
    pub notes: Notes,
    #[serde(flatten)]
    pub meta: Meta,
}

impl Provider {
    pub fn to_input(&self) -> ProviderInput {
        ProviderInput {
            name: self.name.to_string(),
            contact: self.contact.as_ref().map(ToString::to_string),
            contract_end: self.contract_end.map(|d| d.to_string()),
            country: self.country.as_ref().map(ToString::to_string),
            notes: Some(self.notes.to_string()),
        }
    }
}
