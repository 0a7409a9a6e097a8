//! Signatures beyond the simplest: associated functions using `Self`, `impl Trait` in the return
//! type, inner attributes, the function's own attributes and visibility.

use std::fmt::Display;

use leader::{CancellationToken, leader_main, leader_only};

struct Billing {
    invoices: u32,
}

impl Billing {
    fn new(invoices: u32) -> Self {
        Billing { invoices }
    }

    /// An associated function: `Self` works in the signature and the body.
    #[leader_only(lease = "billing-sync")]
    pub(crate) async fn load(_token: CancellationToken, invoices: u32) -> Self {
        if invoices == 0 {
            return Self::new(1);
        }
        Self::new(invoices)
    }
}

/// `impl Trait` in the return type.
#[leader_only(lease = "billing-summary")]
#[must_use = "the summary is the point"]
async fn summary(_token: CancellationToken, billing: Billing) -> impl Display + Send + 'static {
    #![allow(clippy::useless_format)]
    format!("{}", billing.invoices)
}

#[leader_main(flavor = "current_thread")]
async fn main() {
    let billing = Billing::load(0).await.unwrap();
    assert_eq!(billing.invoices, 1);
    assert_eq!(summary(Billing::load(3).await.unwrap()).await.unwrap().to_string(), "3");
}
