// Package ui holds the web interface's front end: its source (src/, built
// with Vite) and the committed production build in dist/, which the web
// server embeds and serves at / and /assets/. Node is never needed to build
// or test the Go code; after changing the source, rebuild dist/ with
//
//	cd web/ui && npm ci && npm run build
//
// and commit the result.
package ui

import "embed"

// Dist is the production build: dist/index.html and dist/assets/….
//
//go:embed all:dist
var Dist embed.FS
