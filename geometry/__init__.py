"""Geometry shared by every component: polygons on the floor plan, the camera model, lens
undistortion, the walkable floor grid and its paths."""
