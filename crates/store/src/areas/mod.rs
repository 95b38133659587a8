//! The store's traits, one per area, with the values they trade in. `queries/` implements
//! each of them once in SQL.

pub mod addresses;
pub mod agents;
pub mod audit;
pub mod backups;
pub mod certificates;
pub mod drills;
pub mod fleet;
pub mod identity;
pub mod jobs;
pub mod moves;
pub mod records;
pub mod series;
pub mod site_keys;
pub mod sites;
