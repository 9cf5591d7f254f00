//! Where active users are: the country of a client address, from an IP-to-country
//! database in MaxMind DB format (`--geoip-db`; `make` installs ip-location-db's
//! geo-whois-asn-country, built daily from the five registries' WHOIS and ASN data and
//! published geofeeds, CC BY 4.0 by the NRO), and the countries' outlines the map is
//! drawn from (`--world-atlas`: world-atlas's Natural Earth 1:110m TopoJSON, public
//! domain shapes).
//!
//! Both files are read once at start. Either may be missing — a build machine that never
//! ran `make setup` — and then countries are unknown or the map is empty, which the log
//! says once; nothing else depends on them.

use std::{collections::HashMap, net::IpAddr, path::Path};

use serde::Deserialize;

/// The country database and the world's outlines.
pub struct Geography {
    countries: Option<maxminddb::Reader<Vec<u8>>>,
    world: wire::WorldMap,
    /// Display names by alpha-2 code: the atlas's short ones ("United Kingdom").
    names: HashMap<String, String>,
}

/// A record of geo-whois-asn-country (and of any database with `country_code`).
#[derive(Deserialize)]
struct CountryRecord<'a> {
    country_code: &'a str,
}

impl Geography {
    /// Reads both files; a missing or unreadable one is logged and left out.
    pub fn open(database: &Path, atlas: &Path) -> Self {
        let countries = match maxminddb::Reader::open_readfile(database) {
            Ok(reader) => Some(reader),
            Err(error) => {
                tracing::warn!(file = %database.display(), %error, "no IP-to-country database: active users' countries are unknown (`make setup` installs it)");
                None
            }
        };
        let world = match std::fs::read(atlas)
            .map_err(|error| error.to_string())
            .and_then(|bytes| world_from_topojson(&bytes))
        {
            Ok(world) => world,
            Err(error) => {
                tracing::warn!(file = %atlas.display(), %error, "no world atlas: the activity map has no countries (`make setup` installs it)");
                wire::WorldMap { countries: Vec::new() }
            }
        };
        let names = world
            .countries
            .iter()
            .filter_map(|shape| Some((shape.country.clone()?, shape.name.clone())))
            .collect();
        Self {
            countries,
            world,
            names,
        }
    }

    /// Neither file: every country unknown (tests that do not look at geography).
    fn none() -> Self {
        Self {
            countries: None,
            world: wire::WorldMap { countries: Vec::new() },
            names: HashMap::new(),
        }
    }

    /// The ISO 3166-1 alpha-2 code of the country `address` is in, if the database
    /// knows it.
    pub fn country(&self, address: IpAddr) -> Option<String> {
        let record = self.countries.as_ref()?.lookup(address).ok()?;
        let record: CountryRecord = record.decode().ok()??;
        let code = record.country_code.to_ascii_uppercase();
        (code.len() == 2).then_some(code)
    }

    /// A country's name for people: the atlas's, else the ISO name, else the code.
    pub fn name(&self, country: &str) -> String {
        if let Some(name) = self.names.get(country) {
            return name.clone();
        }
        celes::Country::from_alpha2(country).map_or_else(|_| country.to_string(), |found| found.long_name.to_string())
    }

    pub fn world(&self) -> &wire::WorldMap {
        &self.world
    }
}

impl Default for Geography {
    fn default() -> Self {
        Self::none()
    }
}

/// What of a TopoJSON topology the map needs.
#[derive(Deserialize)]
struct Topology {
    transform: Option<Transform>,
    arcs: Vec<Vec<[f64; 2]>>,
    objects: HashMap<String, Collection>,
}

#[derive(Deserialize)]
struct Transform {
    scale: [f64; 2],
    translate: [f64; 2],
}

#[derive(Deserialize)]
struct Collection {
    geometries: Vec<Geometry>,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Geometry {
    Polygon {
        arcs: Vec<Vec<i64>>,
        id: Option<String>,
        properties: Option<Properties>,
    },
    MultiPolygon {
        arcs: Vec<Vec<Vec<i64>>>,
        id: Option<String>,
        properties: Option<Properties>,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Properties {
    name: Option<String>,
}

/// The `countries` object of a TopoJSON topology as outlines in degrees: arcs decoded
/// (delta-encoded and quantized when the topology has a transform), joined into rings
/// (a negative index is arc `!index` reversed; a ring's arcs share their end points).
/// The ids are ISO 3166-1 numeric codes; Kosovo, which has none, is `XK` as in the
/// address registries.
pub fn world_from_topojson(bytes: &[u8]) -> Result<wire::WorldMap, String> {
    let topology: Topology = serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
    let arcs: Vec<Vec<[f32; 2]>> = topology
        .arcs
        .iter()
        .map(|arc| {
            let (mut x, mut y) = (0.0, 0.0);
            arc.iter()
                .map(|&[dx, dy]| match &topology.transform {
                    Some(transform) => {
                        x += dx;
                        y += dy;
                        [
                            (x * transform.scale[0] + transform.translate[0]) as f32,
                            (y * transform.scale[1] + transform.translate[1]) as f32,
                        ]
                    }
                    None => [dx as f32, dy as f32],
                })
                .collect()
        })
        .collect();
    let ring = |indices: &[i64]| -> Result<Vec<[f32; 2]>, String> {
        let mut points: Vec<[f32; 2]> = Vec::new();
        for &index in indices {
            let (arc, reversed) = if index < 0 { (!index, true) } else { (index, false) };
            let arc = usize::try_from(arc)
                .ok()
                .and_then(|arc| arcs.get(arc))
                .ok_or_else(|| format!("arc {index} does not exist"))?;
            let skip = usize::from(!points.is_empty());
            if reversed {
                points.extend(arc.iter().rev().skip(skip));
            } else {
                points.extend(arc.iter().skip(skip));
            }
        }
        Ok(points)
    };
    let collection = topology
        .objects
        .get("countries")
        .ok_or("the topology has no `countries` object")?;
    let mut countries = Vec::new();
    for geometry in &collection.geometries {
        let (polygons, id, properties) = match geometry {
            Geometry::Polygon { arcs, id, properties } => (vec![arcs.clone()], id, properties),
            Geometry::MultiPolygon { arcs, id, properties } => (arcs.clone(), id, properties),
            Geometry::Other => continue,
        };
        let name = properties
            .as_ref()
            .and_then(|properties| properties.name.clone())
            .unwrap_or_default();
        let country = match id {
            Some(id) => celes::Country::from_code(id).ok().map(|found| found.alpha2.to_string()),
            None if name == "Kosovo" => Some("XK".to_string()),
            None => None,
        };
        let mut rings = Vec::new();
        for polygon in &polygons {
            for indices in polygon {
                rings.push(ring(indices)?);
            }
        }
        countries.push(wire::CountryShape { country, name, rings });
    }
    Ok(wire::WorldMap { countries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arcs_are_decoded_and_joined_into_rings() {
        // Two arcs forming a unit square: 0 goes (0,0)→(1,0)→(1,1), 1 goes (0,1)→(0,0)
        // after (1,1)→(0,1) is taken from arc 2 reversed.
        let topology = br#"{
            "type": "Topology",
            "transform": {"scale": [1, 1], "translate": [10, 20]},
            "arcs": [[[0, 0], [1, 0], [0, 1]], [[0, 1], [0, -1]], [[0, 1], [1, 0]]],
            "objects": {"countries": {"type": "GeometryCollection", "geometries": [
                {"type": "Polygon", "arcs": [[0, -3, 1]], "id": "276", "properties": {"name": "Germany"}},
                {"type": "Polygon", "arcs": [[1]], "properties": {"name": "Kosovo"}},
                {"type": "Polygon", "arcs": [[1]], "properties": {"name": "N. Cyprus"}}
            ]}}
        }"#;
        let world = world_from_topojson(topology).expect("world");
        let germany = &world.countries[0];
        assert_eq!(germany.country.as_deref(), Some("DE"));
        assert_eq!(
            germany.rings[0],
            vec![[10.0, 20.0], [11.0, 20.0], [11.0, 21.0], [10.0, 21.0], [10.0, 20.0]]
        );
        assert_eq!(world.countries[1].country.as_deref(), Some("XK"));
        assert_eq!(world.countries[2].country, None);
        assert!(world_from_topojson(br#"{"arcs": [], "objects": {}}"#).is_err());
    }

    /// The installed files themselves, when `make setup` has put them where the
    /// defaults point (the tests run in `server/`).
    #[test]
    fn the_installed_database_and_atlas_are_read() {
        let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/node_modules");
        let database = tools.join("@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb");
        let atlas = tools.join("world-atlas/countries-110m.json");
        if !database.exists() || !atlas.exists() {
            panic!(
                "run `make setup` first: {} or {} is missing",
                database.display(),
                atlas.display()
            );
        }
        let geography = Geography::open(&database, &atlas);
        // Google's resolvers are registered in the United States, Deutsche Telekom's
        // 80.156.0.0/16 in Germany.
        assert_eq!(geography.country("8.8.8.8".parse().expect("ip")).as_deref(), Some("US"));
        assert_eq!(
            geography.country("80.156.1.1".parse().expect("ip")).as_deref(),
            Some("DE")
        );
        assert_eq!(geography.country("10.0.0.1".parse().expect("ip")), None);
        assert_eq!(geography.name("DE"), "Germany");
        assert!(geography.world().countries.len() > 170);
        assert!(
            geography
                .world()
                .countries
                .iter()
                .any(|shape| shape.country.as_deref() == Some("BR"))
        );
    }
}
