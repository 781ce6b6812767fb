//! The table of functions: every template function that receives a
//! platform's webhooks is one row, exported by its platform's module
//! ([`crate::revel::FUNCTIONS`], [`crate::winesitting::FUNCTIONS`],
//! [`crate::booking::FUNCTIONS`], [`crate::vinesos::FUNCTIONS`]). The
//! receivers' lookup, `make local`'s routes, the sample events and the test
//! that holds template.yaml and functions/ to it all read this table, so a
//! function's deployment facts are written once.

use std::sync::Arc;

use domain::sources::{EventKind, SourceName};

use crate::booking::{self, BookingFamily};
use crate::revel::{self, RevelEventType};
use crate::vinesos::{self, VinesOsEvent};
use crate::winesitting::{self, WineSittingEvent};

/// One receiver function of the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// Its logical id in template.yaml: `RevelOrderFinalizedFunction`.
    pub logical_id: &'static str,
    /// Its crate (and binary) in functions/: `revel-order-finalized`.
    pub crate_name: &'static str,
    /// Its API Gateway routes (POST), as template.yaml declares them; the
    /// first is the one samples are posted to.
    pub routes: &'static [&'static str],
    /// The event kind it receives.
    pub kind: Kind,
}

impl Function {
    /// The route samples are posted to (the first).
    pub fn route(&self) -> &'static str {
        self.routes[0]
    }
}

/// The event kind a function receives: its platform and, within it, the type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Revel(RevelEventType),
    WineSitting,
    Booking(BookingFamily),
    VinesOs(VinesOsEvent),
}

impl Kind {
    /// The name of its source, in keys: `revel`.
    pub fn source(self) -> SourceName {
        match self {
            Self::Revel(_) => revel::NAME,
            Self::WineSitting => winesitting::NAME,
            Self::Booking(_) => booking::NAME,
            Self::VinesOs(_) => vinesos::NAME,
        }
    }

    /// What its bodies mean.
    pub fn event_kind(self) -> Arc<dyn EventKind> {
        match self {
            Self::Revel(kind) => Arc::new(kind),
            Self::WineSitting => Arc::new(WineSittingEvent),
            Self::Booking(family) => Arc::new(family),
            Self::VinesOs(event) => Arc::new(event),
        }
    }

    /// Its event type, as stored in keys: `order.finalized`.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Revel(kind) => kind.event_type(),
            Self::WineSitting => WineSittingEvent.event_type(),
            Self::Booking(family) => EventKind::event_type(&family),
            Self::VinesOs(event) => event.event_type(),
        }
    }

    /// The function that receives it.
    pub fn function(self) -> &'static Function {
        all()
            .find(|function| function.kind == self)
            .expect("every event kind has its row in the table of functions")
    }
}

/// Every receiver function, platform by platform.
pub fn all() -> impl Iterator<Item = &'static Function> {
    TABLES.into_iter().flatten()
}

/// The function whose template logical id is `logical_id`.
pub fn by_logical_id(logical_id: &str) -> Option<&'static Function> {
    all().find(|function| function.logical_id == logical_id)
}

/// Every platform's rows: the one list [`all`] and [`by_crate`] read.
const TABLES: [&[Function]; 4] = [
    revel::FUNCTIONS,
    winesitting::FUNCTIONS,
    booking::FUNCTIONS,
    vinesos::FUNCTIONS,
];

/// The function built from the crate `crate_name`. A `const fn`, so a
/// receiver's `main` finds its row when it is compiled: a crate not in the
/// table does not build, and the optimiser keeps only the row's source.
pub const fn by_crate(crate_name: &str) -> Option<&'static Function> {
    let mut table = 0;
    while table < TABLES.len() {
        let rows = TABLES[table];
        let mut row = 0;
        while row < rows.len() {
            if same(rows[row].crate_name, crate_name) {
                return Some(&rows[row]);
            }
            row += 1;
        }
        table += 1;
    }
    None
}

/// `a == b`, in a `const fn`.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The kind of a stored event: its source's name and its event type.
pub fn kind_of(source: &str, event_type: &str) -> Option<Kind> {
    all()
        .map(|function| function.kind)
        .find(|kind| kind.source() == source && kind.event_type() == event_type)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn kinds() -> Vec<Kind> {
        let mut kinds: Vec<Kind> = RevelEventType::ALL.into_iter().map(Kind::Revel).collect();
        kinds.push(Kind::WineSitting);
        kinds.extend(BookingFamily::ALL.into_iter().map(Kind::Booking));
        kinds.extend(VinesOsEvent::ALL.into_iter().map(Kind::VinesOs));
        kinds
    }

    #[test]
    fn every_event_kind_has_exactly_one_row_and_every_row_a_kind() {
        let rows: Vec<Kind> = all().map(|function| function.kind).collect();
        let mut expected = kinds();
        let mut found = rows.clone();
        expected.sort_by_key(|kind| format!("{kind:?}"));
        found.sort_by_key(|kind| format!("{kind:?}"));
        assert_eq!(found, expected);
        for kind in kinds() {
            assert_eq!(kind.function().kind, kind);
        }
    }

    #[test]
    fn logical_ids_crates_routes_and_event_keys_are_distinct() {
        let count = all().count();
        let distinct = |values: BTreeSet<String>| values.len();
        assert_eq!(
            distinct(all().map(|f| f.logical_id.to_owned()).collect()),
            count
        );
        assert_eq!(
            distinct(all().map(|f| f.crate_name.to_owned()).collect()),
            count
        );
        assert_eq!(
            distinct(
                all()
                    .map(|f| format!("{}:{}", f.kind.source(), f.kind.event_type()))
                    .collect()
            ),
            count
        );
        let routes: Vec<&str> = all().flat_map(|f| f.routes.iter().copied()).collect();
        assert_eq!(
            distinct(routes.iter().map(|r| r.to_string()).collect()),
            routes.len()
        );
        for function in all() {
            assert!(!function.routes.is_empty(), "{function:?}");
            assert!(
                function
                    .crate_name
                    .starts_with(function.kind.source().as_str()),
                "{function:?}"
            );
            assert!(function.logical_id.ends_with("Function"), "{function:?}");
        }
    }

    #[test]
    fn a_stored_event_finds_its_kind_again_and_an_unknown_one_none() {
        for kind in kinds() {
            assert_eq!(kind_of(&kind.source(), kind.event_type()), Some(kind));
        }
        assert_eq!(kind_of("revel", "order.deleted"), None);
        assert_eq!(kind_of("nobody", "order.finalized"), None);
    }

    #[test]
    fn a_function_is_found_by_its_logical_id_and_by_its_crate() {
        let order = Kind::Revel(RevelEventType::OrderFinalized).function();
        assert_eq!(by_logical_id("RevelOrderFinalizedFunction"), Some(order));
        assert_eq!(by_crate("revel-order-finalized"), Some(order));
        assert_eq!(by_crate("jobs-worker"), None);
    }
}
