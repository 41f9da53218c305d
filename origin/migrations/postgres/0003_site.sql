-- The demo site: intrinsic sizes of images (so pages render <img width height> and never
-- shift), a course's instructor, and a video's progressive (WebM/MP4) file beside its HLS
-- playlist, for browsers without HLS.
CREATE TABLE media (
    key    TEXT    PRIMARY KEY,                    -- R2 key, as in courses.cover_image_key
    width  INTEGER NOT NULL,
    height INTEGER NOT NULL
);
ALTER TABLE courses ADD COLUMN instructor_name TEXT;
ALTER TABLE courses ADD COLUMN instructor_photo_key TEXT;
ALTER TABLE videos ADD COLUMN progressive_key TEXT;
