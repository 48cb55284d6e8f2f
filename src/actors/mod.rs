//! Actors: state owners. The in-memory backend (one [`limit_actor::LimitActor`] per key, a
//! [`coordinator::ReserveCoordinator`] giving multi-key reserves their all-or-nothing
//! meaning) and the [`decrease_applier::DecreaseApplier`] that retries pending decreases.
