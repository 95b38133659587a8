-- The panel's small time series: one point a minute for 48 hours, one an hour for 8 days,
-- each the mean, least and greatest of the values of its minute or hour, and their count.
-- Keep in step with the other dialect's file of the same name.

CREATE TABLE series_points (
    series TEXT NOT NULL,
    resolution TEXT NOT NULL CHECK (resolution IN ('minute', 'hour')),
    at TEXT NOT NULL,
    mean REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (series, resolution, at)
);
