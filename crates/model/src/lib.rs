//! alveole's domain: typed values that are valid by construction, their validators, and the
//! planners that decide things from them. No I/O happens here, so all of it is unit-tested.

pub mod addresses;
pub mod admission;
pub mod backup;
pub mod capacity;
pub mod clock;
pub mod database;
pub mod desired;
pub mod env;
pub mod error;
pub mod evacuation;
pub mod exposure;
pub mod hostname;
pub mod https;
pub mod ids;
pub mod image;
pub mod phase;
pub mod quantity;
pub mod resources;
pub mod series;
pub mod site_move;
pub mod status;
pub mod strict;
pub mod text;

pub use addresses::{AddressMove, IpAllocation, IpPool, Prefix};
pub use admission::{AdmissionPolicy, SiteAdmission};
pub use backup::{BackupHook, BackupPolicy};
pub use capacity::{CapacityError, NodeLoad, choose_node};
pub use clock::{Clock, ShiftedClock, SystemClock};
pub use database::{
    Database, DatabaseCredentials, DatabaseEngine, DatabaseInput, DatabaseLimits, DatabaseOffer,
    DatabaseSpec,
};
pub use desired::{DesiredState, InputFilter, SiteSpec, SiteTls, WireEnv};
pub use env::{EnvName, EnvValue, EnvVar, EnvVarInput, Secret};
pub use error::{FieldError, ValidationErrors};
pub use exposure::{ExposedPort, LimitTier, Transport, validate_exposed_ports};
pub use hostname::{Hostname, Wildcard};
pub use https::{AcmeChallenge, HttpsPolicy};
pub use ids::{
    BackupTargetId, DrillId, JobId, MemberId, NodeId, ProviderId, RestoreId, SiteId, SiteMoveId,
};
pub use image::ImageRef;
pub use phase::SitePhase;
pub use resources::*;
pub use site_move::{
    AgentEndpoints, FreezeStep, IncomingMove, MoveOutcome, MovePhase, MoveProgress, MoveStep,
    OutgoingMove, SiteMove,
};
pub use status::{
    AgentEvent, AgentEventKind, NodeInventory, NodeReport, NodeResources, Package, SiteReport,
    SiteState, SiteTraffic,
};
pub use text::{CountryCode, DisplayName, Email, Notes, Slug};
