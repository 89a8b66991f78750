//! The rules' verdict on an authenticated request: the enforced one, which the request
//! gets, and, where anything is in shadow, the shadow one beside it ([`crate::shadow`]).

use std::rc::Rc;

use crate::config::Unmatched;
use crate::identity::Identity;
use crate::path::PathReadings;
use crate::policy::Service;
use crate::rbac::{has_permission, Params};
use crate::reply::Denial;
use crate::shadow::{RuleSet, ShadowDifference};

/// A refusal and what decided it (for a shadow difference's label). Borrowed, and the
/// label named rather than formatted: only a shadow difference needs them as strings,
/// and every 403 without shadow rules would otherwise allocate them for nothing.
struct Refusal<'s> {
    denial: Denial,
    decider: Decider<'s>,
    permission: &'s str,
}

/// What refused a request.
enum Decider<'s> {
    Rule(&'s Rc<str>),
    Unmatched,
    VenueScope,
}

impl Decider<'_> {
    /// The label a shadow difference carries: the rule's, or `<service>.unmatched` or
    /// `<service>.venue_scope`.
    fn label(&self, service: &Service) -> Rc<str> {
        match self {
            Decider::Rule(label) => Rc::clone(label),
            Decider::Unmatched => format!("{}.unmatched", service.name).into(),
            Decider::VenueScope => format!("{}.venue_scope", service.name).into(),
        }
    }
}

/// The request's place in the service: its method, the readings of its path and its
/// `x-venue-id` headers.
pub struct Request<'a, 'r> {
    pub method: &'a str,
    pub readings: &'a PathReadings<'r>,
    pub venue_headers: &'a [&'r str],
}

/// The enforced verdict; `shadow` is set when the shadow verdict differs.
pub fn authorize(
    service: &Service,
    identity: &Identity,
    request: &Request<'_, '_>,
    shadow: &mut Option<ShadowDifference>,
) -> Result<(), Denial> {
    let enforced = decide(service, identity, &identity.permissions, RuleSet::Enforced, request);
    // The hot path pays for the second decision only where something is in shadow.
    if service.has_shadow || identity.shadow_permissions.is_some() {
        let permissions = identity.shadow_permissions.as_deref().unwrap_or(&identity.permissions);
        let in_shadow = decide(service, identity, permissions, RuleSet::Shadow, request);
        *shadow = difference(service, identity, &enforced, &in_shadow);
    }
    enforced.map_err(|refusal| refusal.denial)
}

fn difference(
    service: &Service,
    identity: &Identity,
    enforced: &Result<(), Refusal<'_>>,
    in_shadow: &Result<(), Refusal<'_>>,
) -> Option<ShadowDifference> {
    let (deciding, denied) = match (enforced, in_shadow) {
        (Ok(()), Err(refusal)) => (refusal, true),
        (Err(refusal), Ok(())) => (refusal, false),
        _ => return None,
    };
    // A role's coming permissions are the change under trial when the role has them: the
    // same rules decide both ways unless a shadow rule does.
    let label = match &identity.shadow_permissions {
        Some(_) => format!("role.{}", identity.role).into(),
        None => deciding.decider.label(service),
    };
    Some(ShadowDifference { label, denied, permission: deciding.permission.to_owned(), tenant: identity.token.tenant.clone() })
}

/// Every reading of the path must pass (see [`PathReadings`]): a rule that matches any
/// form a backend may serve applies.
fn decide<'s>(
    service: &'s Service,
    identity: &Identity,
    permissions: &[String],
    set: RuleSet,
    request: &Request<'_, '_>,
) -> Result<(), Refusal<'s>> {
    for path in request.readings.each() {
        let rule = service.rules.iter().filter(|r| set.includes(service, r)).find_map(|r| r.matches(request.method, path).map(|p| (p, r)));
        let params = match rule {
            Some((params, rule)) => {
                if !has_permission(permissions, &rule.permission, &params, &identity.token.subject) {
                    return Err(Refusal {
                        denial: Denial {
                            status: 403,
                            code: "INSUFFICIENT_PERMISSIONS",
                            message: format!("Insufficient permissions: {} required", rule.permission),
                        },
                        decider: Decider::Rule(&rule.label),
                        permission: &rule.permission,
                    });
                }
                params
            }
            None if set.unmatched(service) == Unmatched::Deny => {
                return Err(Refusal {
                    denial: Denial {
                        status: 403,
                        code: "ROUTE_NOT_ALLOWED",
                        message: String::from("No rule allows this method and path"),
                    },
                    decider: Decider::Unmatched,
                    permission: "",
                });
            }
            None => Params::new(),
        };
        if identity.venue_scoped {
            check_venue_scope(identity, &params, request.venue_headers).map_err(|denial| Refusal {
                denial,
                decider: Decider::VenueScope,
                permission: "",
            })?;
        }
    }
    Ok(())
}

/// A venue-scoped identity acts only on the venues its token lists: every `venueId` path
/// param and every `x-venue-id` header must be one of them.
fn check_venue_scope(identity: &Identity, params: &Params<'_>, venue_headers: &[&str]) -> Result<(), Denial> {
    let allowed = identity.token.venues.as_deref().unwrap_or(&[]);
    let venues = params.iter().filter(|(name, _)| *name == "venueId").map(|(_, v)| *v).chain(venue_headers.iter().copied());
    for venue in venues {
        if !allowed.iter().any(|v| v == venue) {
            return Err(Denial { status: 403, code: "VENUE_ACCESS_DENIED", message: String::from("Access denied to this venue") });
        }
    }
    Ok(())
}
