//! Table-driven MRZ parsing tests: ICAO Doc 9303 specimens, shared-eval ground-truth lines, edge cases.

use std::path::PathBuf;

use kycgate_mrz::checks::{self, check_digit};
use kycgate_mrz::nationality::{country_name, demonym};
use kycgate_mrz::parse::{parse, Format, Mrz, MrzDate, ParseError, Today};

/// Fixed "today" so century decisions are reproducible.
const TODAY: Today = Today { year: 2025, month: 6, day: 1 };

/// One line summarising every parsed field, so a table row states the whole expected result.
fn render(m: &Mrz) -> String {
    fn opt(v: &Option<String>) -> &str {
        v.as_deref().unwrap_or("-")
    }
    let c = &m.checks;
    let mut checks = Vec::new();
    for (name, r) in [
        ("doc", Some(c.document_number)),
        ("dob", Some(c.date_of_birth)),
        ("exp", Some(c.date_of_expiry)),
        ("pn", c.personal_number),
        ("comp", c.composite),
    ] {
        match r {
            Some(true) => checks.push(name.to_owned()),
            Some(false) => checks.push(format!("!{name}")),
            None => {}
        }
    }
    format!(
        "{:?} {}/{} {}/{} #{} nat={} b={} {} e={} pn={} opt={} opt2={} [{}] {}",
        m.format,
        m.document_code,
        m.issuing_state,
        m.surname,
        m.given_names,
        m.document_number,
        m.nationality,
        m.date_of_birth.ymd(),
        m.sex.unwrap_or('-'),
        m.date_of_expiry.ymd(),
        opt(&m.personal_number),
        opt(&m.optional_data),
        opt(&m.optional_data_2),
        checks.join(" "),
        if m.valid { "valid" } else { "invalid" },
    )
}

/// Parses `|`-separated MRZ lines and compares the rendered result with `expected`.
fn check(input: &str, expected: &str) {
    let lines: Vec<&str> = input.split('|').collect();
    let mrz = match parse(&lines, TODAY) {
        Ok(m) => m,
        Err(e) => panic!("{input}: {e}"),
    };
    assert_eq!(render(&mrz), expected, "input: {input}");
    assert_eq!(mrz.lines, lines, "lines are kept as given");
    assert_eq!(mrz.valid, mrz.checks.all_hold());
}

#[test]
fn icao_doc_9303_specimens() {
    // Part 4 (TD3), Part 5 (TD1), Part 6 (TD2), Part 7 (MRV-A, MRV-B).
    check(
        "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<|L898902C36UTO7408122F1204159ZE184226B<<<<<10",
        "Td3 P/UTO ERIKSSON/ANNA MARIA #L898902C3 nat=UTO b=1974-8-12 F e=2012-4-15 pn=ZE184226B opt=- opt2=- [doc dob exp pn comp] valid",
    );
    check(
        "I<UTOD231458907<<<<<<<<<<<<<<<|7408122F1204159UTO<<<<<<<<<<<6|ERIKSSON<<ANNA<MARIA<<<<<<<<<<",
        "Td1 I/UTO ERIKSSON/ANNA MARIA #D23145890 nat=UTO b=1974-8-12 F e=2012-4-15 pn=- opt=- opt2=- [doc dob exp comp] valid",
    );
    check(
        "I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<|D231458907UTO7408122F1204159<<<<<<<6",
        "Td2 I/UTO ERIKSSON/ANNA MARIA #D23145890 nat=UTO b=1974-8-12 F e=2012-4-15 pn=- opt=- opt2=- [doc dob exp comp] valid",
    );
    check(
        "V<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<|L8988901C4XXX4009078F96121096ZE184226B<<<<<<",
        "MrvA V/UTO ERIKSSON/ANNA MARIA #L8988901C nat=XXX b=1940-9-7 F e=1996-12-10 pn=- opt=6ZE184226B opt2=- [doc dob exp] valid",
    );
    check(
        "V<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<|L8988901C4XXX4009078F9612109<<<<<<<<",
        "MrvB V/UTO ERIKSSON/ANNA MARIA #L8988901C nat=XXX b=1940-9-7 F e=1996-12-10 pn=- opt=- opt2=- [doc dob exp] valid",
    );
}

#[test]
fn long_document_numbers() {
    // Part 5's 12-character example: check column `<`, number continues as 734, check digit 9.
    check(
        "I<UTOD23145890<7349<<<<<<<<<<<|3407127M9507122UTO<<<<<<<<<<<2|STEVENSON<<PETER<JOHN<<<<<<<<<",
        "Td1 I/UTO STEVENSON/PETER JOHN #D23145890734 nat=UTO b=1934-7-12 M e=1995-7-12 pn=- opt=- opt2=- [doc dob exp comp] valid",
    );
    // Optional data after the continuation's terminating filler stays optional data.
    check(
        "I<UTOX12345678<ABC0<OPT7<<<<<<|7408122F2712310UTO<<<<<<<<<<<1|DOE<<JANE<<<<<<<<<<<<<<<<<<<<<",
        "Td1 I/UTO DOE/JANE #X12345678ABC nat=UTO b=1974-8-12 F e=2027-12-31 pn=- opt=OPT7 opt2=- [doc dob exp comp] valid",
    );
    // TD2: the continuation sits in line 2's optional data.
    check(
        "I<UTODOE<<JANE<<<<<<<<<<<<<<<<<<<<<<|AB1234567<UTO7408122F300101989X7<<<2",
        "Td2 I/UTO DOE/JANE #AB123456789X nat=UTO b=1974-8-12 F e=2030-1-1 pn=- opt=- opt2=- [doc dob exp comp] valid",
    );
    // A wrong continuation check digit fails the document-number check (and the composite).
    check(
        "I<UTOD23145890<7348<<<<<<<<<<<|3407127M9507122UTO<<<<<<<<<<<2|STEVENSON<<PETER<JOHN<<<<<<<<<",
        "Td1 I/UTO STEVENSON/PETER JOHN #D23145890734 nat=UTO b=1934-7-12 M e=1995-7-12 pn=- opt=- opt2=- [!doc dob exp !comp] invalid",
    );
    // `<` in the check column of a TD3 is not a continuation: the check simply fails.
    check(
        "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<|L898902C3<UTO7408122F1204159ZE184226B<<<<<10",
        "Td3 P/UTO ERIKSSON/ANNA MARIA #L898902C3 nat=UTO b=1974-8-12 F e=2012-4-15 pn=ZE184226B opt=- opt2=- [!doc dob exp pn !comp] invalid",
    );
}

#[test]
fn shared_eval_ground_truth_lines() {
    // Lines from shared/eval/mrz/gt.tsv (specimen documents), fields read off by hand.
    let rows: &[(&str, &str)] = &[
        (
            "IDCHES0002068<8<<<<<<<<<<<<<<<|8102287F1301014CHE<<<<<<<<<<<4|VADIS<<QUO<<<<<<<<<<<<<<<<<<<<",
            "Td1 ID/CHE VADIS/QUO #S0002068 nat=CHE b=1981-2-28 F e=2013-1-1 pn=- opt=- opt2=- [doc dob exp comp] valid",
        ),
        (
            "I<MAC12281507<0<<<<<<<<0212300|6106225M1212307<<<<<<<<<<<<<<6|CHONG<<KA<KEONG<<<<<<<<<<<<<<<",
            "Td1 I/MAC CHONG/KA KEONG #12281507 nat= b=1961-6-22 M e=2012-12-30 pn=- opt=0212300 opt2=- [doc dob exp comp] valid",
        ),
        (
            // Old Romanian ID: digits in the nationality field are kept, not "fixed".
            "IDROUSAVA<<SUPERMAN<<<<<<<<<<<<<<<<<|HD198025<51328505095M130509012049941",
            "Td2 ID/ROU SAVA/SUPERMAN #HD198025 nat=132 b=1985-5-9 M e=2013-5-9 pn=- opt=1204994 opt2=- [doc dob exp comp] valid",
        ),
        (
            "I<SI<09999100180706966505468<<|6606079F0807276SI<<<<<<<<<<<<0|VZOREC<<TINA<<<<<<<<<<<<<<<<<<",
            "Td1 I/SI VZOREC/TINA #099991001 nat=SI b=1966-6-7 F e=2008-7-27 pn=- opt=0706966505468 opt2=- [doc dob exp comp] valid",
        ),
        (
            "P<BDRMUSTERMANN<<ERIKA<<<<<<<<<<<<<<<<<<<<<<|CA000000<4D<<6408125F1802212<<<<<<<<<<<<<<<6",
            "Td3 P/BDR MUSTERMANN/ERIKA #CA000000 nat=D b=1964-8-12 F e=2018-2-21 pn=- opt=- opt2=- [doc dob exp pn comp] valid",
        ),
        (
            "P<TWNLIN<<MEI<HUA<<<<<<<<<<<<<<<<<<<<<<<<<<<|0000000000TWN7601015F1404018A234567893<<<<18",
            "Td3 P/TWN LIN/MEI HUA #000000000 nat=TWN b=1976-1-1 F e=2014-4-1 pn=A234567893 opt=- opt2=- [doc dob exp pn comp] valid",
        ),
        (
            "P<ISLAEVARSDOTTIR<<THURIDUR<OESP<<<<<<<<<<<<|A0000000<0ISL6612315F0905264311266<9539<<<32",
            "Td3 P/ISL AEVARSDOTTIR/THURIDUR OESP #A0000000 nat=ISL b=1966-12-31 F e=2009-5-26 pn=311266<9539 opt=- opt2=- [doc dob exp pn comp] valid",
        ),
        (
            "P<AUSCITIZEN<<JANE<<<<<<<<<<<<<<<<<<<<<<<<<<|PA09404097AUS8406077F1903212<17331334P<<<<08",
            "Td3 P/AUS CITIZEN/JANE #PA0940409 nat=AUS b=1984-6-7 F e=2019-3-21 pn=17331334P opt=- opt2=- [doc dob exp pn comp] valid",
        ),
        (
            "P<GBRUNITED<KINGDOM<TWENTY<SIX<<JODIE<PIPPA<|1071828900GBR8501178F1601312<<<<<<<<<<<<<<06",
            "Td3 P/GBR UNITED KINGDOM TWENTY SIX/JODIE PIPPA #107182890 nat=GBR b=1985-1-17 F e=2016-1-31 pn=- opt=- opt2=- [doc dob exp pn comp] valid",
        ),
        (
            // Specimen printed with bad check digits and a single `<` between the names: reported, not repaired.
            "IDMLT9999999<<3<9999999M<999<<|7309258F0810245MLT0310240<<<<5|SPITERI<MANDY<<<<<<<<<<<<<<<<<",
            "Td1 ID/MLT SPITERI MANDY/ #9999999 nat=MLT b=1973-9-25 F e=2008-10-24 pn=- opt=9999999M<999 opt2=0310240 [!doc !dob exp !comp] invalid",
        ),
        (
            "I<LVAPA99929216121282<88882<<<|8212122M1703054LVA<<<<<<<<<<<0|PARAUDZINS<<ANDRIS<<<<<<<<<<<<",
            "Td1 I/LVA PARAUDZINS/ANDRIS #PA9992921 nat=LVA b=1982-12-12 M e=2017-3-5 pn=- opt=121282<88882 opt2=- [doc dob exp comp] valid",
        ),
        (
            // Letter O inside the document number; truncated given names stay truncated.
            "IRFRAK682T8YLO0<1105040043<<<<|7906123F1401073SEN<<<<<<<<<<<6|MARTIN<<CHRISTELLE<HELENE<LAUR",
            "Td1 IR/FRA MARTIN/CHRISTELLE HELENE LAUR #K682T8YLO nat=SEN b=1979-6-12 F e=2014-1-7 pn=- opt=1105040043 opt2=- [doc dob exp comp] valid",
        ),
        (
            "ITNLD52151673<4VNR1234567890<<|9404014F1106172CHE<I<28<<<<<<2|BELSER<<JULIETTE<HENRIKE<SOPHI",
            "Td1 IT/NLD BELSER/JULIETTE HENRIKE SOPHI #52151673 nat=CHE b=1994-4-1 F e=2011-6-17 pn=- opt=VNR1234567890 opt2=I<28 [doc dob exp comp] valid",
        ),
        (
            // COU is no valid code; it is kept as printed.
            "IRGBRZU12345673<<<<<<<<<<<<<<<|6608198F0808088COU<<<<<<<<<<<6|SAMPLE<<SUSANNA<<<<<<<<<<<<<<<",
            "Td1 IR/GBR SAMPLE/SUSANNA #ZU1234567 nat=COU b=1966-8-19 F e=2008-8-8 pn=- opt=- opt2=- [doc dob exp comp] valid",
        ),
        (
            // Green-card specimen: document-number and composite digits invalid as printed.
            "C1USA0223456791EAC9730053465<<|4910040M9411014CAN<<<<<<<<<<<9|CRITTENDEN<<LEE<W<<<<<<<<<<<<<",
            "Td1 C1/USA CRITTENDEN/LEE W #022345679 nat=CAN b=1949-10-4 M e=1994-11-1 pn=- opt=EAC9730053465 opt2=- [!doc dob exp !comp] invalid",
        ),
        (
            "VCFRASPECIMEN<<SPECIMEN<<<<<<<<<<<<<|F000000005UTO0311063M1401143<M300703",
            "MrvB VC/FRA SPECIMEN/SPECIMEN #F00000000 nat=UTO b=2003-11-6 M e=2014-1-14 pn=- opt=M300703 opt2=- [doc dob exp] valid",
        ),
        (
            "VBD<<DEDIC<<SIDNAN<<<<<<<<<<<<<<<<<<|D091740530BOS8201135M9708011<2020711",
            "MrvB VB/D DEDIC/SIDNAN #D09174053 nat=BOS b=1982-1-13 M e=1997-8-1 pn=- opt=2020711 opt2=- [doc dob exp] valid",
        ),
        (
            "VNUSATRAVELER<<HAPPY<<<<<<<<<<<<<<<<<<<<<<<<|1234567897CAN6612120M1407282B3XLC000FD142955",
            "MrvA VN/USA TRAVELER/HAPPY #123456789 nat=CAN b=1966-12-12 M e=2014-7-28 pn=- opt=B3XLC000FD142955 opt2=- [doc dob exp] valid",
        ),
        (
            "VDGBRMUNIR<<FAISAL<<<<<<<<<<<<<<<<<<|AD07259817PAK7608151M0611165<<<<<<<<",
            "MrvB VD/GBR MUNIR/FAISAL #AD0725981 nat=PAK b=1976-8-15 M e=2006-11-16 pn=- opt=- opt2=- [doc dob exp] valid",
        ),
    ];
    for (input, expected) in rows {
        check(input, expected);
    }
}

#[test]
fn centuries() {
    // Born "today" stays in this century; one day later would be in the future → 1925.
    check(
        "P<GBRDOE<<JANE<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<|1234567897GBD2506012F3001019<<<<<<<<<<<<<<04",
        "Td3 P/GBR DOE/JANE #123456789 nat=GBD b=2025-6-1 F e=2030-1-1 pn=- opt=- opt2=- [doc dob exp pn comp] valid",
    );
    check(
        "P<GBRDOE<<JANE<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<|1234567897GBD2506023F3001019<<<<<<<<<<<<<<04",
        "Td3 P/GBR DOE/JANE #123456789 nat=GBD b=1925-6-2 F e=2030-1-1 pn=- opt=- opt2=- [doc dob exp pn comp] valid",
    );
    // Expiry: 2075 is the last year of the window (today + 50), 76 is read as 1976.
    check(
        "P<UTODOE<<JOHN<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<|1234567897UNK7400001M7512319AB12<<<<<<<<<<80",
        "Td3 P/UTO DOE/JOHN #123456789 nat=UNK b=1974-None-None M e=2075-12-31 pn=AB12 opt=- opt2=- [doc dob exp pn comp] valid",
    );
    check(
        "P<UTODOE<<JOHN<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<|1234567897XXB7402304X7601015<<<<<<<<<<<<<<00",
        "Td3 P/UTO DOE/JOHN #123456789 nat=XXB b=1974-2-None X e=1976-1-1 pn=- opt=- opt2=- [doc dob exp pn comp] valid",
    );
    // The window moves with `today`.
    let later = Today { year: 2090, month: 1, day: 1 };
    let lines = ["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122F1204159ZE184226B<<<<<10"];
    let m = parse(&lines, later).expect("specimen parses");
    assert_eq!(m.date_of_birth, MrzDate { year: Some(2074), month: Some(8), day: Some(12) });
    assert_eq!(m.date_of_expiry.year, Some(2112));
}

#[test]
fn unknown_date_parts_and_sex() {
    // `<<` parts are unknown; sex `<` is X; stateless code kept.
    check(
        "P<UTODOE<<JOHN<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<|1234567897XXA74<<<<1<<<<<<<0<<<<<<<<<<<<<<04",
        "Td3 P/UTO DOE/JOHN #123456789 nat=XXA b=1974-None-None X e=None-None-None pn=- opt=- opt2=- [doc dob exp pn comp] valid",
    );
    // Germany's `D<<` issuer and nationality, new-style document number with letters.
    check(
        "P<D<<MUSTERMANN<<ERIKA<<<<<<<<<<<<<<<<<<<<<<|C01X00T478D<<6408125F3508312<<<<<<<<<<<<<<02",
        "Td3 P/D MUSTERMANN/ERIKA #C01X00T47 nat=D b=1964-8-12 F e=2035-8-31 pn=- opt=- opt2=- [doc dob exp pn comp] valid",
    );
    // An unexpected sex character is reported as unknown, never guessed.
    let lines = ["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122Q1204159ZE184226B<<<<<10"];
    assert_eq!(parse(&lines, TODAY).expect("parses").sex, None);
}

#[test]
fn date_helpers() {
    let d = MrzDate { year: Some(2007), month: Some(6), day: Some(2) };
    assert_eq!(d.age_on(TODAY), Some(17));
    assert_eq!(MrzDate { day: Some(1), ..d }.age_on(TODAY), Some(18));
    // Unknown month: latest possible birthday, so not yet 18.
    assert_eq!(MrzDate { month: None, day: None, ..d }.age_on(TODAY), Some(17));
    assert_eq!(MrzDate::default().age_on(TODAY), None);
    let exp = MrzDate { year: Some(2025), month: Some(5), day: Some(31) };
    assert_eq!(exp.is_before(TODAY), Some(true));
    assert_eq!(MrzDate { day: Some(1), month: Some(6), ..exp }.is_before(TODAY), Some(false));
    assert_eq!(MrzDate { month: None, day: None, ..exp }.is_before(TODAY), Some(false));
    assert_eq!(MrzDate::default().ymd(), "None-None-None");
    let t = Today::from_system_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400));
    assert_eq!(t, Today { year: 2000, month: 2, day: 29 });
}

#[test]
fn errors() {
    let td3 = "L898902C36UTO7408122F1204159ZE184226B<<<<<10";
    assert_eq!(parse(&[td3], TODAY).unwrap_err(), ParseError::LineCount(1));
    assert_eq!(parse(&["P<UTOERIKSSON", td3], TODAY).unwrap_err(), ParseError::UnknownLayout { lengths: vec![13, 44] });
    assert_eq!(
        parse(&["P<UTOERIKSSON<<ANNA<MARIa<<<<<<<<<<<<<<<<<<<", td3], TODAY).unwrap_err(),
        ParseError::InvalidCharacter { line: 0, column: 24 }
    );
    // Surrounding whitespace (from text OCR) is tolerated.
    let m = parse(&["  P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n", td3], TODAY).expect("trimmed");
    assert!(m.valid);
}

#[test]
fn debug_prints_no_personal_data() {
    let lines = ["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122F1204159ZE184226B<<<<<10"];
    let dbg = format!("{:?}", parse(&lines, TODAY).expect("parses"));
    assert!(dbg.contains("Td3") && dbg.contains("valid: true"), "{dbg}");
    for secret in ["ERIKSSON", "ANNA", "L898902C3", "1974", "740812", "ZE184226B"] {
        assert!(!dbg.contains(secret), "Debug leaked a field");
    }
}

#[test]
fn check_digit_rule() {
    let rows: &[(&str, u8)] = &[("520727", 3), ("L898902C3", 6), ("D23145890734", 9), ("AB2134<<<", 5), ("<<<<<<", 0)];
    for &(data, digit) in rows {
        assert_eq!(check_digit(data.as_bytes()), Some(digit), "{data}");
    }
    assert_eq!(check_digit(b"l898"), None);
    // Visas carry no composite or personal-number digit; TD3 carries both.
    let visa = checks::evaluate(
        Format::MrvB,
        &["V<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<", "L8988901C4XXX4009078F9612109<<<<<<<<"],
    );
    assert_eq!((visa.personal_number, visa.composite), (None, None));
}

#[test]
fn demonyms_and_names() {
    let rows: &[(&str, Option<&str>)] = &[
        ("UKR", Some("UKRAINIAN")),
        ("GBR", Some("BRITISH")),
        ("USA", Some("AMERICAN")),
        ("D", Some("GERMAN")),
        ("D<<", Some("GERMAN")),
        ("DEU", Some("GERMAN")),
        ("UTO", Some("UTOPIAN")),
        ("XXA", Some("STATELESS")),
        ("XXB", Some("REFUGEE")),
        ("XXC", Some("REFUGEE")),
        ("XXX", Some("UNSPECIFIED NATIONALITY")),
        ("UNO", Some("UNITED NATIONS")),
        ("UNA", Some("UNITED NATIONS")),
        ("UNK", Some("KOSOVAR")),
        ("EUE", Some("EUROPEAN UNION")),
        ("GBD", Some("BRITISH OVERSEAS TERRITORIES CITIZEN")),
        ("GBN", Some("BRITISH NATIONAL (OVERSEAS)")),
        ("GBO", Some("BRITISH OVERSEAS CITIZEN")),
        ("GBP", Some("BRITISH PROTECTED PERSON")),
        ("GBS", Some("BRITISH SUBJECT")),
        ("XOM", Some("SOVEREIGN MILITARY ORDER OF MALTA")),
        ("XPO", Some("INTERPOL")),
        ("CHE", Some("SWISS")),
        ("NLD", Some("DUTCH")),
        ("COU", None),
        ("132", None),
        ("", None),
        ("<<<", None),
        ("UKRA", None),
    ];
    for &(code, want) in rows {
        assert_eq!(demonym(code), want, "{code:?}");
    }
    assert_eq!(country_name("D<<"), Some("GERMANY"));
    assert_eq!(country_name("CIV"), Some("COTE D'IVOIRE"));
    assert_eq!(country_name("XCC"), Some("CARIBBEAN COMMUNITY"));
    assert_eq!(country_name("XES"), Some("ORGANISATION OF EASTERN CARIBBEAN STATES"));
}

/// All 249 ISO 3166-1 alpha-3 codes (ISO 3166 Maintenance Agency list).
const ISO_ALPHA3: &str = "ABW AFG AGO AIA ALA ALB AND ARE ARG ARM ASM ATA ATF ATG AUS AUT AZE BDI BEL BEN BES BFA BGD BGR \
BHR BHS BIH BLM BLR BLZ BMU BOL BRA BRB BRN BTN BVT BWA CAF CAN CCK CHE CHL CHN CIV CMR COD COG COK COL COM CPV CRI CUB \
CUW CXR CYM CYP CZE DEU DJI DMA DNK DOM DZA ECU EGY ERI ESH ESP EST ETH FIN FJI FLK FRA FRO FSM GAB GBR GEO GGY GHA GIB \
GIN GLP GMB GNB GNQ GRC GRD GRL GTM GUF GUM GUY HKG HMD HND HRV HTI HUN IDN IMN IND IOT IRL IRN IRQ ISL ISR ITA JAM JEY \
JOR JPN KAZ KEN KGZ KHM KIR KNA KOR KWT LAO LBN LBR LBY LCA LIE LKA LSO LTU LUX LVA MAC MAF MAR MCO MDA MDG MDV MEX MHL \
MKD MLI MLT MMR MNE MNG MNP MOZ MRT MSR MTQ MUS MWI MYS MYT NAM NCL NER NFK NGA NIC NIU NLD NOR NPL NRU NZL OMN PAK PAN \
PCN PER PHL PLW PNG POL PRI PRK PRT PRY PSE PYF QAT REU ROU RUS RWA SAU SDN SEN SGP SGS SHN SJM SLB SLE SLV SMR SOM SPM \
SRB SSD STP SUR SVK SVN SWE SWZ SXM SYC SYR TCA TCD TGO THA TJK TKL TKM TLS TON TTO TUN TUR TUV TWN TZA UGA UKR UMI URY \
USA UZB VAT VCT VEN VGB VIR VNM VUT WLF WSM YEM ZAF ZMB ZWE";

#[test]
fn every_iso_alpha3_code_maps() {
    let codes: Vec<&str> = ISO_ALPHA3.split_whitespace().collect();
    assert_eq!(codes.len(), 249);
    for code in codes {
        let d = demonym(code).unwrap_or_else(|| panic!("{code} has no demonym"));
        let n = country_name(code).unwrap_or_else(|| panic!("{code} has no name"));
        for s in [d, n] {
            assert!(!s.is_empty() && s == s.to_ascii_uppercase() && s.is_ascii(), "{code}: {s}");
        }
    }
}

/// `$KYCGATE_EVAL_DIR` or `../shared/eval` from the repository root.
fn eval_dir() -> PathBuf {
    std::env::var_os("KYCGATE_EVAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/eval"))
}

#[test]
fn every_gt_tsv_row_parses_with_its_format_and_check_verdict() {
    let path = eval_dir().join("mrz/gt.tsv");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (set KYCGATE_EVAL_DIR)", path.display()));
    let mut parsed = 0;
    for row in text.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (file, format, mrz, pass) = (cols[0], cols[1], cols[2], cols[3]);
        if mrz.is_empty() {
            assert_eq!(pass, "None", "{file}: only the negative sample has no MRZ");
            continue;
        }
        let lines: Vec<&str> = mrz.split('|').collect();
        let m = parse(&lines, TODAY).unwrap_or_else(|e| panic!("{file}: {e}"));
        let want = match format {
            "TD1" => Format::Td1,
            "TD2" => Format::Td2,
            "TD3" => Format::Td3,
            "MRVA" => Format::MrvA,
            "MRVB" => Format::MrvB,
            other => panic!("{file}: unknown format {other}"),
        };
        assert_eq!(m.format, want, "{file}");
        assert_eq!(m.valid.to_string(), pass.to_lowercase(), "{file}");
        parsed += 1;
    }
    assert!(parsed >= 40, "expected the 44 labelled MRZs, parsed {parsed}");
}
