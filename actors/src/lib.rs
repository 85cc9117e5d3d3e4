//! relay365-actors: the supervision tree, the actors, the store, the Graph client and the
//! business primitives. It never depends on the service shell (`relay365`).

pub mod cluster;
pub mod credential;
pub mod delivery;
pub mod deps;
pub mod graph;
pub mod group_commit;
pub mod health;
pub mod keyed;
pub mod primitives;
pub mod processor;
pub mod receiver;
pub mod renewal;
pub mod store;
pub mod subscription;
pub mod supervision;
pub mod sweeper;
pub mod token;
pub mod tree;
pub mod util;

pub use deps::{Deps, PoolStats, Settings};
pub use health::Health;
pub use store::Store;
