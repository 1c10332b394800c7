//! Authentication and authorization of API shim requests (front-proxy client certificates, TokenReview, SubjectAccessReview).
