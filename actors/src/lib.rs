//! relay365-actors: the supervision tree, the actors, the store, the Graph client and the
//! business primitives. It never depends on the service shell (`relay365`).
pub mod primitives;
