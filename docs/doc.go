// Package docs holds no code: it is the folder of the project's
// documentation, and its tests check that what the pages name (flags,
// metrics, alerts, links) exists in the code.
package docs
