//! The generated messages, server and client. Generated code is not held to the workspace's
//! panic lints; it decodes with prost, which returns errors for malformed input.

#![allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects,
    missing_docs
)]

pub mod spaceone {
    pub mod api {
        pub mod core {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/spaceone.api.core.v1.rs"));
            }
        }
        pub mod cost_analysis {
            pub mod v1 {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/spaceone.api.cost_analysis.v1.rs"
                ));
            }
        }
    }
}
pub mod google {
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
    }
}
pub use spaceone::api::core::v1 as core;
pub use spaceone::api::cost_analysis::v1 as job;

/// The compiled `proto/` files (job.proto and its imports), for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/spaceone_descriptor.bin"));

/// The Job and JobTask servers (generated apart, see build.rs): requests are the messages above,
/// answers are [`super::wire::Proto`] bytes.
pub mod server {
    include!(concat!(
        env!("OUT_DIR"),
        "/server/spaceone.api.cost_analysis.v1.rs"
    ));
}
