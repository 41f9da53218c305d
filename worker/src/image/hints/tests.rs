use super::*;
use crate::image::format::OutputFormat;
use crate::image::key::DerivativeKey;

fn hints(headers: &[(&str, &str)]) -> Hints {
    Hints::read(|name| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| (*v).to_owned())
    })
}

fn options(spec: &str) -> ImageOptions {
    ImageOptions::parse(spec).unwrap().options.canonical()
}

#[test]
fn hints_are_read_once_and_bad_ones_ignored() {
    let h = hints(&[
        ("Sec-CH-Width", "412.5"),
        ("Width", "900"),
        ("Viewport-Width", "390"),
        ("DPR", "2.625"),
        ("Save-Data", "On"),
        ("ECT", "3g"),
        ("RTT", "300"),
        ("Downlink", "1.45"),
    ]);
    assert_eq!(
        h.element_width,
        Some(413),
        "the Sec-CH form wins, rounded up"
    );
    assert_eq!(h.viewport_width, Some(390));
    assert_eq!(h.dpr, Some(263));
    assert!(h.save_data && h.slow_ect);
    assert_eq!((h.rtt, h.downlink_kbps), (Some(300), Some(1450)));
    for bad in ["", "-5", "abc", "NaN", "inf", "1e400", "0", &"9".repeat(40)] {
        let h = hints(&[("Sec-CH-Width", bad), ("Sec-CH-DPR", bad), ("RTT", bad)]);
        assert_eq!((h.element_width, h.dpr), (None, None), "{bad:?}");
    }
    assert_eq!(hints(&[]), Hints::default());
}

#[test]
fn width_auto_rounds_up_to_the_ladder() {
    let table: [(&[(&str, &str)], u32); 8] = [
        (&[], AUTO_WIDTH_WITHOUT_HINTS),
        (&[("Sec-CH-Width", "500")], 640),
        (&[("Sec-CH-Width", "320")], 320),
        (&[("Sec-CH-Width", "1")], 320),
        // A phone: 390 CSS px at 3× is 1170 device px.
        (
            &[("Sec-CH-Viewport-Width", "390"), ("Sec-CH-DPR", "3")],
            1200,
        ),
        (&[("Viewport-Width", "1920")], 1920),
        (&[("Sec-CH-Viewport-Width", "5000"), ("DPR", "2")], 3840),
        // The element's own width beats the viewport's.
        (&[("Sec-CH-Width", "700"), ("Viewport-Width", "1920")], 768),
    ];
    for (headers, want) in table {
        assert_eq!(hints(headers).auto_width(&AUTO_WIDTHS), want, "{headers:?}");
    }
    assert!(AUTO_WIDTHS.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_slow_connection_is_cloudflares_rule() {
    let table: [(&[(&str, &str)], bool); 11] = [
        (&[], false),
        (&[("Save-Data", "on")], true),
        (&[("Save-Data", "off")], false),
        (&[("ECT", "slow-2g")], true),
        (&[("ECT", "2g")], true),
        (&[("ECT", "3g")], true),
        (&[("ECT", "4g")], false),
        (&[("RTT", "150")], false),
        (&[("RTT", "175")], true),
        (&[("Downlink", "4.9")], true),
        (&[("Downlink", "5")], false),
    ];
    for (headers, slow) in table {
        assert_eq!(hints(headers).slow(), slow, "{headers:?}");
    }
}

#[test]
fn resolved_options_share_the_explicit_urls_derivative() {
    let phone = hints(&[("Sec-CH-Viewport-Width", "480")]);
    let (resolved, vary) = resolve(&options("w=auto,h=300,fit=cover"), &phone, &AUTO_WIDTHS);
    assert_eq!(resolved, options("w=480,h=300,fit=cover"));
    assert_eq!(vary, WIDTH_HINTS.to_vec());
    let key = |o: &ImageOptions| DerivativeKey::edge_url("a.jpg", o, OutputFormat::Webp);
    assert_eq!(key(&resolved), key(&options("w=480,h=300,fit=cover")));
    // scq: the quality only on a slow connection; the answer varies on the network
    // hints either way.
    let slow = hints(&[("ECT", "2g")]);
    let (resolved, vary) = resolve(&options("w=400,q=80,scq=40"), &slow, &AUTO_WIDTHS);
    assert_eq!(resolved, options("w=400,q=40"));
    assert_eq!(vary, NETWORK_HINTS.to_vec());
    let (resolved, vary) = resolve(
        &options("w=400,q=80,scq=40"),
        &Hints::default(),
        &AUTO_WIDTHS,
    );
    assert_eq!(resolved, options("w=400,q=80"));
    assert_eq!(vary, NETWORK_HINTS.to_vec());
    // Nothing hinted: nothing changes, nothing varies.
    let plain = options("w=400");
    assert_eq!(resolve(&plain, &slow, &AUTO_WIDTHS), (plain, Vec::new()));
}

#[test]
fn the_ladder_keeps_to_the_width_allow_list() {
    use crate::image::policy::DEFAULT_SIDES;
    // The default list has no 768: a tablet gets 960, still an allowed width.
    let steps = ladder(Some(&DEFAULT_SIDES));
    assert!(!steps.contains(&768) && steps.contains(&960));
    assert!(steps.iter().all(|w| DEFAULT_SIDES.contains(w)));
    let tablet = hints(&[("Sec-CH-Width", "700")]);
    assert_eq!(tablet.auto_width(&steps), 960);
    // A deployment that lists none of the steps: its own widths.
    let own = ladder(Some(&[500, 250]));
    assert_eq!(own, vec![250, 500]);
    assert_eq!(tablet.auto_width(&own), 500);
    assert_eq!(hints(&[]).auto_width(&own), 500);
    assert_eq!(ladder(None), AUTO_WIDTHS.to_vec());
}

#[test]
fn the_vary_of_an_answer_names_accept_and_the_hints_read() {
    assert_eq!(vary(&[]), None);
    assert_eq!(
        vary(&NETWORK_HINTS).as_deref(),
        Some("Accept, Save-Data, ECT, RTT, Downlink")
    );
}
