def test_meta(client):
    response = client.get("/api/v1/meta")
    assert response.status_code == 200
    assert response.json["name"] == "MARS"
