//! Placeholder until the engine's budgets land.
#[derive(Clone, Debug, Default)]
pub struct Limits {}
