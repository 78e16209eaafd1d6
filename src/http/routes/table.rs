//! The routing table's builder: the same calls as axum's (`Routes::route`,
//! `get(handler).put(handler)`), which register each handler with axum and
//! record, from the handler's signature, what it extracts: the caller's key,
//! path and query parameters, headers, the body. The router and the list
//! of operations ([`RouteSpec`]) come from the one table in `routes/mod.rs`,
//! so a route cannot be served without being listed; the OpenAPI test holds
//! the document equal to the list.
//!
//! Every extractor a handler takes must say what it reads
//! ([`DescribeExtractor`]): a handler with an extractor that does not is a
//! compile error, not a silent gap.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::handler::Handler;
use axum::http::{HeaderMap, Method};
use axum::routing::MethodRouter;
use serde::de::DeserializeOwned;

use crate::http::auth::Caller;
use crate::http::json::{ApiJson, ApiPath, ApiQuery, OptionalApiJson};
use crate::http::probe::{self, Field, Shape};
use crate::http::{AppState, IdempotencyHeader};

/// One operation the router serves: a method on a path, its handler and
/// what the handler extracts from the request.
#[derive(Debug)]
pub struct RouteSpec {
    pub method: Method,
    /// The route's pattern, `{name}` for a path parameter.
    pub path: &'static str,
    /// The handler's path in the crate (`omnistock::http::routes::...`).
    pub handler: &'static str,
    pub extracts: Vec<Extracted>,
}

/// What one extractor reads from a request.
#[derive(Debug)]
pub enum Extracted {
    /// The caller's API key (`Authorization: Bearer`): the operation needs
    /// the bearer security scheme.
    Caller,
    /// The path parameters, as the handler's path type asks for them (the
    /// names are the route pattern's).
    Path(Shape),
    /// The query parameters: the fields of the handler's query type, or why
    /// they could not be listed.
    Query(Result<Vec<Field>, String>),
    /// One named header.
    Header { name: &'static str, required: bool },
    /// The whole header map: which headers the handler reads is not in its
    /// signature (the test lists them and checks the sources).
    HeaderMap,
    /// A JSON body of the named schema (`required: false`: an empty body is
    /// accepted); `fields`, the body type's fields when it is a struct.
    JsonBody {
        schema: Cow<'static, str>,
        required: bool,
        fields: Shape,
    },
    /// The raw body stream (the handler reads the content type itself).
    RawBody,
    /// A CORS preflight: the page's `Origin` header (and the key in the
    /// URL, when there is one).
    Origin,
}

/// What an extractor reads; `None` for one that reads nothing from the
/// request (the state).
pub trait DescribeExtractor {
    fn describe() -> Option<Extracted>;
}

impl<S> DescribeExtractor for State<S> {
    fn describe() -> Option<Extracted> {
        None
    }
}

impl DescribeExtractor for Caller {
    fn describe() -> Option<Extracted> {
        Some(Extracted::Caller)
    }
}

/// A reader takes a secret key (bearer) or a publishable one (bearer, or
/// the `key` query parameter its handler's query type lists).
impl DescribeExtractor for crate::http::publishable::Reader {
    fn describe() -> Option<Extracted> {
        Some(Extracted::Caller)
    }
}

impl DescribeExtractor for crate::http::publishable::Preflight {
    fn describe() -> Option<Extracted> {
        Some(Extracted::Origin)
    }
}

impl DescribeExtractor for IdempotencyHeader {
    fn describe() -> Option<Extracted> {
        Some(Extracted::Header {
            name: "Idempotency-Key",
            required: false,
        })
    }
}

impl DescribeExtractor for crate::http::conditional::IfNoneMatch {
    fn describe() -> Option<Extracted> {
        Some(Extracted::Header {
            name: "If-None-Match",
            required: false,
        })
    }
}

impl DescribeExtractor for HeaderMap {
    fn describe() -> Option<Extracted> {
        Some(Extracted::HeaderMap)
    }
}

impl<T: DeserializeOwned> DescribeExtractor for ApiPath<T> {
    fn describe() -> Option<Extracted> {
        Some(Extracted::Path(probe::shape::<T>()))
    }
}

impl<T: DeserializeOwned> DescribeExtractor for ApiQuery<T> {
    fn describe() -> Option<Extracted> {
        Some(Extracted::Query(probe::fields::<T>()))
    }
}

impl<T: DeserializeOwned + utoipa::ToSchema> DescribeExtractor for ApiJson<T> {
    fn describe() -> Option<Extracted> {
        Some(Extracted::JsonBody {
            schema: T::name(),
            required: true,
            fields: probe::shape::<T>(),
        })
    }
}

impl<T: DeserializeOwned + utoipa::ToSchema> DescribeExtractor for OptionalApiJson<T> {
    fn describe() -> Option<Extracted> {
        Some(Extracted::JsonBody {
            schema: T::name(),
            required: false,
            fields: probe::shape::<T>(),
        })
    }
}

impl DescribeExtractor for Body {
    fn describe() -> Option<Extracted> {
        Some(Extracted::RawBody)
    }
}

/// What a handler extracts, from its argument types (`Args`, the tuple of
/// them, is inferred as axum infers its own).
pub trait HandlerExtracts<Args> {
    fn extracts() -> Vec<Extracted>;
}

macro_rules! handler_extracts {
    ($($arg:ident),*) => {
        impl<F, Fut, $($arg,)*> HandlerExtracts<($($arg,)*)> for F
        where
            F: FnOnce($($arg),*) -> Fut,
            Fut: Future,
            $($arg: DescribeExtractor,)*
        {
            #[allow(unused_mut)] // no arguments: nothing to add
            fn extracts() -> Vec<Extracted> {
                let mut extracted = Vec::new();
                $(extracted.extend(<$arg as DescribeExtractor>::describe());)*
                extracted
            }
        }
    };
}

handler_extracts!();
handler_extracts!(T1);
handler_extracts!(T1, T2);
handler_extracts!(T1, T2, T3);
handler_extracts!(T1, T2, T3, T4);
handler_extracts!(T1, T2, T3, T4, T5);
handler_extracts!(T1, T2, T3, T4, T5, T6);
handler_extracts!(T1, T2, T3, T4, T5, T6, T7);
handler_extracts!(T1, T2, T3, T4, T5, T6, T7, T8);

type S = Arc<AppState>;

/// One handler under one method, described on demand.
struct Operation {
    method: Method,
    handler: &'static str,
    extracts: fn() -> Vec<Extracted>,
}

impl Operation {
    fn of<H: HandlerExtracts<A>, A>(method: Method) -> Operation {
        Operation {
            method,
            handler: std::any::type_name::<H>(),
            extracts: H::extracts,
        }
    }
}

/// The handlers of one path by method: axum's `MethodRouter` and the list.
pub struct Methods {
    router: MethodRouter<S>,
    operations: Vec<Operation>,
}

macro_rules! methods {
    ($($name:ident => $method:ident),*) => {
        $(
            #[doc = concat!("Routes `", stringify!($method), "` to `handler` (as `axum::routing::", stringify!($name), "`).")]
            #[allow(dead_code)] // every method can start a route, used yet or not
            pub fn $name<H, T, A>(handler: H) -> Methods
            where
                H: Handler<T, S> + HandlerExtracts<A>,
                T: 'static,
            {
                Methods {
                    router: axum::routing::$name(handler),
                    operations: vec![Operation::of::<H, A>(Method::$method)],
                }
            }
        )*

        // Every method chains, as with axum, whether the table uses it yet or not.
        #[allow(dead_code)]
        impl Methods {
            $(
                #[doc = concat!("Also routes `", stringify!($method), "` to `handler`.")]
                pub fn $name<H, T, A>(mut self, handler: H) -> Methods
                where
                    H: Handler<T, S> + HandlerExtracts<A>,
                    T: 'static,
                {
                    self.router = self.router.$name(handler);
                    self.operations.push(Operation::of::<H, A>(Method::$method));
                    self
                }
            )*
        }
    };
}

methods!(get => GET, post => POST, put => PUT, delete => DELETE, options => OPTIONS);

/// The router being built, and the operations it serves.
pub struct Routes {
    router: Router<S>,
    operations: Vec<(&'static str, Operation)>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes::new()
    }
}

impl Routes {
    pub fn new() -> Routes {
        Routes {
            router: Router::new(),
            operations: Vec::new(),
        }
    }

    /// Serves `methods` at `path` (as `axum::Router::route`).
    pub fn route(mut self, path: &'static str, methods: Methods) -> Routes {
        self.router = self.router.route(path, methods.router);
        self.operations
            .extend(methods.operations.into_iter().map(|op| (path, op)));
        self
    }

    /// What answers a request no route matches.
    pub fn fallback<H: Handler<T, S>, T: 'static>(mut self, handler: H) -> Routes {
        self.router = self.router.fallback(handler);
        self
    }

    /// What answers a known path with a method it does not serve.
    pub fn method_not_allowed_fallback<H: Handler<T, S>, T: 'static>(
        mut self,
        handler: H,
    ) -> Routes {
        self.router = self.router.method_not_allowed_fallback(handler);
        self
    }

    pub fn into_router(self) -> Router<S> {
        self.router
    }

    /// Every operation served, each with what its handler extracts.
    pub fn into_specs(self) -> Vec<RouteSpec> {
        self.operations
            .into_iter()
            .map(|(path, op)| RouteSpec {
                method: op.method,
                path,
                handler: op.handler,
                extracts: (op.extracts)(),
            })
            .collect()
    }
}
