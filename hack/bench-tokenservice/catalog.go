package main

import (
	"fmt"

	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
)

// /v1/check with and without a 1,000-route APICatalog, in ABBA order.

// benchCatalog is n routes shaped like a real API: areas, object types, and
// per type a list, a get by id, a search and an association path, all
// needing a scope the benchmark's apps hold.
func benchCatalog(n int) catalog.Catalog {
	c := catalog.Catalog{Name: "bench", Scopes: []string{"crm.objects.contacts.read", "crm.objects.contacts.write"}}
	for i := 0; len(c.Routes) < n; i++ {
		base := fmt.Sprintf("/area%d/v3/objects/type%d", i%10, i)
		for _, r := range []catalog.Route{
			{Methods: []string{"GET"}, Path: base},
			{Methods: []string{"GET"}, Path: base + "/{id}"},
			{Methods: []string{"POST"}, Path: base + "/search"},
			{Methods: []string{"PUT"}, Path: base + "/{id}/associations/{to}/{toId}"},
		} {
			r.Name, r.Scopes = fmt.Sprintf("r%d", len(c.Routes)), []string{"crm.objects.contacts.read"}
			c.Routes = append(c.Routes, r)
		}
	}
	c.Routes = c.Routes[:n]
	return c
}

// catalogRuns measures /v1/check with wrk against two token services with
// the same 10,000 apps, one with no catalog and one with a 1,000-route
// catalog, sending both the same nginx-style request, in alternating rounds.
func catalogRuns(o options) (empty, withCatalog []float64, err error) {
	ix, tok, err := index()
	if err != nil {
		return nil, nil, err
	}
	set, results := catalog.Compile([]catalog.Catalog{benchCatalog(1000)})
	if !results[0].InForce {
		return nil, nil, fmt.Errorf("the benchmark catalog is not in force: %+v", results[0])
	}
	return pairedRuns(o, service(ix, nil), service(ix, staticCatalogs{set}), tok)
}
