//! Edits of the objects a plan changes, as functions from object to object: the preview applies
//! them to the state a person captured, planx applies the same functions to what it reads from
//! the cluster, so the preview cannot differ from what is applied.

pub mod k8s;
pub mod seal;
